"""Train the emotion CNN on a folder-per-emotion dataset, with checkpoints, resume and calibration.

`train(config)` fits `network.TrainingNet` (torch modules, bf16 autocast and channels-last on CPU, so
that bf16 units run the convolutions) with SGD + Nesterov momentum or AdamW on label-smoothed, optionally
class-weighted cross-entropy, under a warm-up + cosine learning-rate schedule. Every batch is augmented
(flip, small affine, brightness/contrast, erasing; optionally mixup). After every epoch it scores the
validation split and writes `<output>.ckpt/last.pt` (weights, optimiser state, history, RNG state), so
`resume` continues an interrupted run exactly. At the end it writes the weights into the Keras network
(`model.keras_network`), fits a softmax temperature on the validation split and saves the product model
(`CalibratedSoftmax` head) to `config.output`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from emotiontrack.align import FER2013_GEOMETRY, MIN_FACES_MEASURED, Geometry, measure_geometry
from emotiontrack.dataset import Split, load_train_val
from emotiontrack.errors import EmotionTrackError
from emotiontrack.evaluate import classification_report
from emotiontrack.network import ARCHITECTURES, DEFAULT_ARCHITECTURE, Architecture, TrainingNet
from emotiontrack.types import INPUT_SIZE

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    output: Path = Path("models/emotiontrack.keras")
    val_dir: Path | None = None
    architecture: str = DEFAULT_ARCHITECTURE  # a name in network.ARCHITECTURES
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9) or "adamw"
    learning_rate: float = 0.05  # peak, after the warm-up
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    seed: int = 0
    label_smoothing: float = 0.1
    # Per-class loss weight = (n_largest / n_class) ** power: 0 ignores imbalance, 1 fully balances.
    class_weight_power: float = 0.3
    mixup: float = 0.0  # Beta(a, a) mixing of image pairs; 0 turns it off
    limit: int | None = None  # use at most this many training images (quick runs and tests)
    # The saved model averages the logits of each face and its mirror image (twice the inference cost).
    flip_average: bool = True
    # Start from this checkpoint's weights (OUTPUT.ckpt/last.pt of an earlier run) with a fresh schedule.
    init: Path | None = None
    bf16: bool = True  # bf16 autocast for the forward pass (fp32 weights and optimiser state)

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        paths = {"data", "output", "val_dir", "init"}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in data.items() if k in known})

    def network_architecture(self) -> Architecture:
        if self.architecture not in ARCHITECTURES:
            raise EmotionTrackError(f"unknown architecture {self.architecture!r}: choose from {sorted(ARCHITECTURES)}")
        return ARCHITECTURES[self.architecture]


def checkpoint_dir(output: Path) -> Path:
    return output.with_name(output.name + ".ckpt")


def batches(split: Split, batch_size: int, seed: int, epoch: int) -> Iterator[tuple[NDArray[np.float32], NDArray[np.int64]]]:
    """One epoch of shuffled, augmented (images (n, 48, 48) float32, labels) batches; the randomness depends
    only on (seed, epoch), so a resumed run sees the batches it would have seen."""
    order = np.random.default_rng([seed, epoch]).permutation(len(split))
    for index, start in enumerate(range(0, len(order), batch_size)):
        picks = order[start : start + batch_size]
        yield augment(split.images[picks], np.random.default_rng([seed, epoch, index])), split.labels[picks]


def augment(images: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.float32]:
    """Random flip, rotation (±12°), scale (±12%), shift (±10%), brightness/contrast and erasing."""
    n, size = len(images), INPUT_SIZE
    out = np.empty((n, size, size), np.float32)
    angles = rng.uniform(-12, 12, n)
    scales = rng.uniform(0.88, 1.12, n)
    shifts = rng.uniform(-0.1, 0.1, (n, 2)) * size
    flips = rng.random(n) < 0.5
    for i in range(n):
        m = cv2.getRotationMatrix2D((size / 2, size / 2), angles[i], scales[i])
        m[:, 2] += shifts[i]
        image = images[i, :, ::-1] if flips[i] else images[i]
        out[i] = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), borderMode=cv2.BORDER_REFLECT_101)
    contrast = rng.uniform(0.75, 1.25, (n, 1, 1))
    brightness = rng.uniform(-25, 25, (n, 1, 1))
    mean = out.mean(axis=(1, 2), keepdims=True)
    out = np.clip((out - mean) * contrast + mean + brightness, 0, 255)
    for i in np.flatnonzero(rng.random(n) < 0.25):  # random erasing: robustness to hands and occluders
        h, w = rng.integers(8, 20, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        out[i, y : y + h, x : x + w] = rng.uniform(0, 255)
    return out


def class_weights(split: Split, power: float) -> NDArray[np.float32]:
    counts = split.counts().astype(np.float64)
    weights = (counts.max() / counts) ** power
    return (weights / np.average(weights, weights=counts)).astype(np.float32)


def fit_temperature(logits: NDArray[np.float32], labels: NDArray[np.int64]) -> float:
    """The softmax temperature that minimises the negative log-likelihood on held-out data."""

    def nll(log_t: float) -> float:
        return -float(np.mean(log_softmax(logits / math.exp(log_t), axis=1)[np.arange(len(labels)), labels]))

    return math.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x)


def fit_temperature(logits: NDArray[np.float32], labels: NDArray[np.int64]) -> float:
    """The softmax temperature that minimises the negative log-likelihood on held-out data."""

    def nll(log_t: float) -> float:
        return -float(np.mean(log_softmax(logits / math.exp(log_t), axis=1)[np.arange(len(labels)), labels]))

    return math.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x)


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up to the peak, then cosine decay to zero at the last step."""
    warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
    total = max(warmup + 1, config.epochs * steps_per_epoch)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def _optimizer(net: TrainingNet, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on BatchNorm's scales and shifts or on biases (they set scale, not capacity).
    decay = [p for p in net.parameters() if p.dim() > 1]
    rest = [p for p in net.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=0.9, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.learning_rate)
    raise EmotionTrackError(f"unknown optimizer {config.optimizer!r}: choose from {list(OPTIMIZERS)}")


def _autocast(config: TrainConfig) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16)


def _as_batch(images: NDArray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None].contiguous(memory_format=torch.channels_last)


class _Step:
    """One optimisation step on a batch: (mixed) soft targets, class weights, bf16 forward, fp32 update."""

    def __init__(self, net: TrainingNet, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 weights: NDArray[np.float32]):
        self.net, self.optimizer, self.config = net, optimizer, config
        self.class_weight = torch.from_numpy(weights)
        self.eye = torch.eye(net.n_classes)

    def __call__(self, images: NDArray[np.float32], labels: NDArray[np.int64], rng: np.random.Generator) -> tuple[float, float]:
        x, y = _as_batch(images), torch.from_numpy(labels)
        targets = self.eye[y] * (1 - self.config.label_smoothing) + self.config.label_smoothing / self.net.n_classes
        sample_weight = self.class_weight[y]
        if self.config.mixup > 0:
            lam = float(rng.beta(self.config.mixup, self.config.mixup))
            pair = torch.from_numpy(rng.permutation(len(y)))
            x = lam * x + (1 - lam) * x[pair]
            targets = lam * targets + (1 - lam) * targets[pair]
            sample_weight = lam * sample_weight + (1 - lam) * sample_weight[pair]
        with _autocast(self.config):
            logits = self.net(x)
        loss = (-(targets * torch.log_softmax(logits.float(), dim=1)).sum(1) * sample_weight).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), float((logits.argmax(1) == y).float().mean())


def predict_logits(net: TrainingNet, images: NDArray[np.uint8], flip_average: bool, bf16: bool = True,
                   batch_size: int = 512) -> NDArray[np.float32]:
    """The network's logits (averaged with the mirror image's when `flip_average`) for (n, 48, 48) images."""
    net.eval()
    parts = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(images), batch_size):
            x = _as_batch(images[start : start + batch_size])
            logits = net(x).float()
            if flip_average:
                logits = (logits + net(x.flip(3)).float()) / 2
            parts.append(logits.numpy())
    return np.concatenate(parts) if parts else np.empty((0, net.n_classes), np.float32)


def _validate(net: TrainingNet, val_split: Split, config: TrainConfig) -> dict[str, float]:
    logits = predict_logits(net, val_split.images, config.flip_average, config.bf16)
    report = classification_report(softmax(logits, axis=1), val_split.labels, list(val_split.classes))
    return {"val_loss": report["nll"], "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}


def _save_checkpoint(folder: Path, state: dict[str, Any]) -> None:
    """last.pt (everything a resume needs) and state.json (the same, readable), each written atomically."""
    tmp = folder / "last.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / "last.pt")
    summary = {k: v for k, v in state.items() if k in ("epochs_done", "config", "history", "train_seconds")}
    _write_json_atomic(folder / "state.json", summary)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EmotionTrackError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a file that is not its own
        raise EmotionTrackError(f"{path} is not a training checkpoint (OUTPUT.ckpt/last.pt of an earlier run): "
                                f"{exc.__class__.__name__}") from None


def _initial_network(config: TrainConfig, n_classes: int) -> TrainingNet:
    torch.manual_seed(config.seed)
    net = TrainingNet(config.network_architecture(), n_classes)
    if config.init is not None:
        state = _load_checkpoint(config.init)
        if "model" not in state or Architecture.from_json(state["architecture"]) != net.architecture \
                or len(state["classes"]) != n_classes:
            raise EmotionTrackError(f"--init: {config.init} is not a training checkpoint of a {config.architecture} "
                                    f"network with {n_classes} classes (use OUTPUT.ckpt/last.pt of an earlier run)")
        net.load_state_dict(state["model"])
    return net.to(memory_format=torch.channels_last)


def load_checkpoint_config(output: Path) -> TrainConfig:
    state_path = checkpoint_dir(output) / "state.json"
    if not state_path.is_file():
        raise EmotionTrackError(f"nothing to resume: {state_path} not found")
    return TrainConfig.from_json(json.loads(state_path.read_text())["config"])


GEOMETRY_SAMPLE = 1000  # training faces on which the canonical landmark positions are measured


def training_geometry(train_split: Split, seed: int = 0) -> tuple[Geometry, dict[str, Any]]:
    """Where MTCNN puts the landmarks of the training faces (align.measure_geometry, on a sample)."""
    from emotiontrack.detect import FaceDetector

    picks = np.random.default_rng(seed).permutation(len(train_split))[:GEOMETRY_SAMPLE]
    detector = FaceDetector(min_face=20)  # the faces are enlarged to 4x48 px: no downscaling
    geometry, stats = measure_geometry(train_split.images[np.sort(picks)], detector.central_landmarks)
    if stats["found"] < min(MIN_FACES_MEASURED, len(picks)):
        log.warning("landmarks found on only %d training images: the model gets FER2013's face geometry",
                    stats["found"])
        return FER2013_GEOMETRY, {**stats, "canonical": FER2013_GEOMETRY.to_json(), "fallback": "FER2013"}
    return geometry, stats


def calibrate_and_save(net: TrainingNet, config: TrainConfig, classes: list[str], val_split: Split,
                       geometry: Geometry) -> dict[str, Any]:
    """Fit the softmax temperature on the validation split and write the product model to config.output,
    with the canonical face geometry that aligned crops map faces onto."""
    from emotiontrack.model import keras_network, with_calibrated_softmax, with_flip_average

    network = keras_network(net)
    inference = with_flip_average(network) if config.flip_average else network
    # The temperature is fitted on the logits the product computes: fp32, as torchnet and Keras run it.
    logits = predict_logits(net, val_split.images, config.flip_average, bf16=False)
    temperature = fit_temperature(logits, val_split.labels)
    before = classification_report(softmax(logits, axis=1), val_split.labels, classes)
    after = classification_report(softmax(logits / temperature, axis=1), val_split.labels, classes)
    log.info("validation accuracy %.4f, macro-F1 %.4f; ECE %.4f before calibration, %.4f after (T=%.3f)",
             after["accuracy"], after["macro_f1"], before["ece"], after["ece"], temperature)
    product = with_calibrated_softmax(inference, classes, temperature, geometry.to_json())
    config.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.output.with_name(config.output.stem + ".tmp.keras")
    product.save(tmp)
    os.replace(tmp, config.output)
    return {"config": config.to_json(), "temperature": temperature, "model": str(config.output),
            "val_size": len(val_split),
            "validation": {"accuracy": after["accuracy"], "macro_f1": after["macro_f1"],
                           "ece_before_calibration": before["ece"], "ece_after_calibration": after["ece"],
                           "nll_before_calibration": before["nll"], "nll_after_calibration": after["nll"]}}


def _limited(split: Split, config: TrainConfig) -> Split:
    if not config.limit:
        return split
    picks = np.random.default_rng(config.seed).permutation(len(split))[: config.limit]
    return dataclasses.replace(split, images=split.images[picks], labels=split.labels[picks])


def train(
    config: TrainConfig,
    resume: bool = False,
    on_batch: Callable[[int, int, dict[str, float]], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume), calibrate and save; returns a summary (history, temperature, paths)."""
    train_split, val_split = load_train_val(config.data, config.val_dir)
    train_split = _limited(train_split, config)
    classes = list(train_split.classes)
    log.info("train: %d images %s; validation: %d images", len(train_split),
             dict(zip(classes, train_split.counts().tolist())), len(val_split))
    folder = checkpoint_dir(config.output)
    folder.mkdir(parents=True, exist_ok=True)
    net = _initial_network(config, len(classes))
    optimizer = _optimizer(net, config)
    history: list[dict[str, float]] = []
    if resume:
        state = _load_checkpoint(folder / "last.pt")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history = state["history"]
        log.info("resuming after epoch %d of %d", state["epochs_done"], config.epochs)
    step = _Step(net, optimizer, config, class_weights(train_split, config.class_weight_power))
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    for epoch in range(len(history), config.epochs):
        started = time.monotonic()
        net.train()
        sums = np.zeros(2)
        for index, (images, labels) in enumerate(batches(train_split, config.batch_size, config.seed, epoch)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, epoch * steps_per_epoch + index, steps_per_epoch)
            sums += step(images, labels, np.random.default_rng([config.seed, epoch, index, 1]))
            if on_batch:
                on_batch(index + 1, steps_per_epoch, {"loss": sums[0] / (index + 1), "accuracy": sums[1] / (index + 1)})
        logs = {"epoch": epoch + 1, "loss": sums[0] / steps_per_epoch, "accuracy": sums[1] / steps_per_epoch,
                "lr": optimizer.param_groups[0]["lr"], **_validate(net, val_split, config)}
        logs["train_seconds"] = (history[-1]["train_seconds"] if history else 0.0) + time.monotonic() - started
        history.append(logs)
        log.info("epoch %d/%d: %s", epoch + 1, config.epochs, ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        _save_checkpoint(folder, {"epochs_done": epoch + 1, "config": config.to_json(), "history": history,
                                  "train_seconds": logs["train_seconds"], "model": net.state_dict(),
                                  "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                                  "architecture": net.architecture.to_json(), "classes": classes})
        if on_epoch:
            on_epoch(epoch, logs)

    geometry, geometry_stats = training_geometry(train_split, config.seed)
    log.info("canonical landmarks %s (found on %d of %d training faces)", geometry.to_json(),
             geometry_stats["found"], geometry_stats["faces"])
    summary = calibrate_and_save(net, config, classes, val_split, geometry)
    summary.update(history=history, train_size=len(train_split), architecture=net.architecture.to_json(),
                   geometry=geometry_stats)
    _write_json_atomic(folder / "summary.json", summary)
    return summary
