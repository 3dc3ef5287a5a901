"""Evaluate a model on a folder-per-emotion split: accuracy, macro-F1, per-class scores, confusion,
expected calibration error (ECE) and throughput; optional confusion-matrix and reliability plots."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emotiontrack.model.dataset import load_split
from emotiontrack.model.predictor import EmotionModel
from emotiontrack.types import EMOTIONS

ECE_BINS = 15
BOOTSTRAP_RESAMPLES = 1000  # for the 95% intervals of accuracy and macro-F1


def expected_calibration_error(probs: NDArray, labels: NDArray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability(probs: NDArray, labels: NDArray, bins: int = ECE_BINS) -> list[dict[str, float | None]]:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [
        {"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int((which == b).sum()),
         "confidence": float(confidence[which == b].mean()) if (which == b).any() else None,
         "accuracy": float(correct[which == b].mean()) if (which == b).any() else None}
        for b in range(bins)
    ]


def _confusion(labels: NDArray, predicted: NDArray, n_classes: int) -> NDArray[np.int64]:
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return confusion


def _macro_f1(confusion: NDArray) -> NDArray[np.float64]:
    """Macro-F1 over the classes present in the labels, for confusions (..., k, k)."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    support, predicted = confusion.sum(axis=-1), confusion.sum(axis=-2)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=(support + predicted) > 0)
    present = support > 0
    return (f1 * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def bootstrap_intervals(labels: NDArray, predicted: NDArray, n_classes: int, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = 0) -> dict[str, list[float]]:
    """95% percentile-bootstrap intervals over faces of accuracy and macro-F1 (faces drawn with replacement)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(labels), (resamples, len(labels)))
    cells = labels[picks] * n_classes + predicted[picks] + (np.arange(resamples) * n_classes**2)[:, None]
    confusions = np.bincount(cells.ravel(), minlength=resamples * n_classes**2).reshape(resamples, n_classes, n_classes)
    accuracy = np.diagonal(confusions, axis1=1, axis2=2).sum(axis=1) / len(labels)
    return {name: [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]
            for name, values in (("accuracy_ci95", accuracy), ("macro_f1_ci95", _macro_f1(confusions)))}


def classification_report(probs: NDArray, labels: NDArray, classes: list[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 (over classes present in the labels) with their bootstrap intervals, per-class
    scores, confusion, ECE, NLL."""
    n_classes = len(classes)
    predicted = probs.argmax(axis=1)
    confusion = _confusion(labels, predicted, n_classes)
    per_class = {}
    for k, name in enumerate(classes):
        tp = confusion[k, k]
        support = int(confusion[k].sum())
        precision = tp / confusion[:, k].sum() if confusion[:, k].sum() else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": support}
    nll = -np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)))
    return {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(_macro_f1(confusion)),
        **(bootstrap_intervals(labels, predicted, n_classes) if len(labels) else {}),
        "per_class": per_class,
        "classes": classes,
        "confusion": confusion.tolist(),
        "ece": expected_calibration_error(probs, labels),
        "nll": float(nll),
        "reliability": reliability(probs, labels),
    }


def predict_in_batches(model: EmotionModel, images: NDArray[np.uint8], batch_size: int = 256,
                       on_batch: Callable[[int], None] | None = None) -> NDArray[np.float32]:
    """Probabilities (n, 7) in EMOTIONS order, computed exactly as `analyze` computes them."""
    out = []
    for start in range(0, len(images), batch_size):
        out.append(model.predict(images[start : start + batch_size]))
        if on_batch:
            on_batch(len(out[-1]))
    return np.concatenate(out) if out else np.empty((0, len(EMOTIONS)), np.float32)


# Test-time views for `evaluate --tta`: the image itself and four copies shifted by TTA_SHIFT pixels diagonally
# (the model averages each with its mirror image itself, so ten views in all, like ten-crop testing). Training
# shifts faces by up to ±10% (augment), so these views stay inside what the model has seen.
TTA_SHIFT = 2
TTA_OFFSETS = ((0, 0), (-TTA_SHIFT, -TTA_SHIFT), (-TTA_SHIFT, TTA_SHIFT), (TTA_SHIFT, -TTA_SHIFT), (TTA_SHIFT, TTA_SHIFT))


def shifted(images: NDArray[np.uint8], dx: int, dy: int) -> NDArray[np.uint8]:
    """Images (n, h, w) moved by (dx, dy) pixels, the uncovered border mirrored in."""
    if dx == dy == 0:
        return images
    h, w = images.shape[1:]
    padded = np.pad(images, ((0, 0), (abs(dy), abs(dy)), (abs(dx), abs(dx))), mode="reflect")
    return np.ascontiguousarray(padded[:, abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w])


def evaluate(data: Path, model_path: Path, on_batch: Callable[[int], None] | None = None,
             on_loaded: Callable[[int], None] | None = None, split_name: str | None = None,
             tta: bool = False, precision: str = "auto") -> dict[str, Any]:
    """Score the model on a split, in `precision` as `analyze` would run it here; with `tta`, probabilities
    averaged over TTA_OFFSETS views (for reports: `analyze` classifies each face once)."""
    model = EmotionModel.load(model_path, precision=precision)  # dataset images are face crops already
    labels = list(EMOTIONS)
    split = load_split(data, EMOTIONS, require_all=False, split=split_name)
    views = TTA_OFFSETS if tta else TTA_OFFSETS[:1]
    if on_loaded:
        on_loaded(len(split) * len(views))
    started = time.perf_counter()
    probs = np.mean([predict_in_batches(model, shifted(split.images, dx, dy), on_batch=on_batch)
                     for dx, dy in views], axis=0)
    seconds = time.perf_counter() - started
    report = classification_report(probs, split.labels, labels)
    report.update({"data": split.source, "model": str(model_path), "images_per_s": len(split) / seconds,
                   "temperature": model.net.temperature, "backend": "torch", "precision": model.precision,
                   "tta_views": len(views) * (2 if model.net.flip_average else 1)})
    return report


def save_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """confusion.png (row-normalised) and reliability.png, drawn with matplotlib's Agg backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    classes = report["classes"]
    confusion = np.asarray(report["confusion"], np.float64)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)

    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(rates):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion (row-normalised), accuracy {report['accuracy']:.3f}, n={report['n']}")
    fig.colorbar(image, ax=ax, shrink=0.8)
    confusion_path = folder / "confusion.png"
    fig.savefig(confusion_path, dpi=110)

    fig = Figure(figsize=(5, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = [b for b in report["reliability"] if b["n"]]
    ax.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["accuracy"] for b in bins], width=1 / ECE_BINS, edgecolor="k",
           alpha=0.7, label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="C3", label="model")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability, ECE {report['ece']:.3f}")
    ax.legend(loc="upper left")
    reliability_path = folder / "reliability.png"
    fig.savefig(reliability_path, dpi=110)
    return [confusion_path, reliability_path]
