"""Train the emotion CNN on a folder-per-emotion dataset, with checkpoints, resume and calibration.

`train(config)` fits `model.build_network` with Adam on label-smoothed categorical cross-entropy,
augmenting every batch (flip, small affine, brightness/contrast, erasing), saving a checkpoint after
every epoch into `<output>.ckpt/`. After the last epoch it fits a softmax temperature on the validation
split and writes the product model (`CalibratedSoftmax` head) to `config.output`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from emotiontrack._keras import keras
from emotiontrack.dataset import Split, load_train_val
from emotiontrack.errors import EmotionTrackError
from emotiontrack.evaluate import classification_report
from emotiontrack.model import INPUT_SIZE, CalibratedSoftmax, build_network, with_calibrated_softmax, with_flip_average

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    output: Path = Path("models/emotiontrack.keras")
    val_dir: Path | None = None
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    label_smoothing: float = 0.1
    # Per-class loss weight = (n_largest / n_class) ** power: 0 ignores imbalance, 1 fully balances.
    class_weight_power: float = 0.3
    limit: int | None = None  # use at most this many training images (quick runs and tests)
    # The saved model averages the logits of each face and its mirror image (twice the inference cost).
    flip_average: bool = True
    # Start from this checkpoint's weights (OUTPUT.ckpt/last.keras of an earlier run) with a fresh schedule.
    init: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        paths = {"data", "output", "val_dir", "init"}
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()})


def bn_momentum(total_steps: int) -> float:
    """BatchNorm's moving-average momentum: Keras' 0.99 (a ~100-step window) needs thousands of steps to
    settle; short runs (small datasets) get a shorter window so that inference statistics are right."""
    return float(np.clip(1 - 10 / max(total_steps, 1), 0.9, 0.99))


def checkpoint_dir(output: Path) -> Path:
    return output.with_name(output.name + ".ckpt")


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented (x, y, sample_weight) batches; the randomness depends only on (seed, epoch)."""

    def __init__(self, split: Split, batch_size: int, seed: int, epoch: int, class_weight: NDArray[np.float32]):
        super().__init__()
        self.split, self.batch_size, self.seed, self.epoch = split, batch_size, seed, epoch
        self.class_weight = class_weight
        self.order = self._shuffle()

    def _shuffle(self) -> NDArray[np.int64]:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.split))

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        picks = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = augment(self.split.images[picks], rng)
        labels = self.split.labels[picks]
        y = np.eye(len(self.split.classes), dtype=np.float32)[labels]
        return x[..., None], y, self.class_weight[labels]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._shuffle()


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


def _compile(network: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    warmup = steps_per_epoch  # one epoch of linear warm-up, then cosine decay to 1% of the peak
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10,
        decay_steps=max(1, steps_per_epoch * config.epochs - warmup),
        alpha=0.01,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )
    network.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )


class _Checkpoint(keras.callbacks.Callback):
    """After each epoch: the network with its optimizer state, then state.json (both atomically)."""

    def __init__(self, folder: Path, config: TrainConfig, history: list[dict[str, float]]):
        super().__init__()
        self.folder, self.config, self.history = folder, config, history
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.history.append({k: float(v) for k, v in (logs or {}).items()} | {"epoch": epoch + 1})
        tmp = self.folder / "last.tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, self.folder / "last.keras")
        state = {
            "epochs_done": epoch + 1,
            "config": self.config.to_json(),
            "history": self.history,
            "train_seconds": _previous_seconds(self.history[:-1]) + time.monotonic() - self.started,
        }
        self.history[-1]["train_seconds"] = state["train_seconds"]
        self.started = time.monotonic()
        _write_json_atomic(self.folder / "state.json", state)


def _previous_seconds(history: list[dict[str, float]]) -> float:
    return history[-1].get("train_seconds", 0.0) if history else 0.0


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _initial_network(config: TrainConfig, n_classes: int, total_steps: int) -> keras.Model:
    if config.init is None:
        return build_network(n_classes, bn_momentum=bn_momentum(total_steps))
    if not config.init.is_file():
        raise EmotionTrackError(f"--init: checkpoint not found: {config.init}")
    network = keras.saving.load_model(config.init, compile=False)
    if network.outputs[0].shape[-1] != n_classes or isinstance(network.layers[-1], CalibratedSoftmax):
        raise EmotionTrackError(f"--init: {config.init} is not a training checkpoint with {n_classes} classes "
                                "(use OUTPUT.ckpt/last.keras of an earlier run)")
    return network


def load_checkpoint_config(output: Path) -> TrainConfig:
    state_path = checkpoint_dir(output) / "state.json"
    if not state_path.is_file():
        raise EmotionTrackError(f"nothing to resume: {state_path} not found")
    return TrainConfig.from_json(json.loads(state_path.read_text())["config"])


def calibrate_and_save(network: keras.Model, config: TrainConfig, classes: list[str], val_split: Split) -> dict[str, Any]:
    """Fit the softmax temperature on the validation split and write the product model to config.output."""
    inference = with_flip_average(network) if config.flip_average else network
    logits = inference.predict(val_split.images[..., None].astype(np.float32), batch_size=256, verbose=0)
    temperature = fit_temperature(logits, val_split.labels)
    before = classification_report(softmax(logits, axis=1), val_split.labels, classes)
    after = classification_report(softmax(logits / temperature, axis=1), val_split.labels, classes)
    log.info("validation accuracy %.4f, macro-F1 %.4f; ECE %.4f before calibration, %.4f after (T=%.3f)",
             after["accuracy"], after["macro_f1"], before["ece"], after["ece"], temperature)
    product = with_calibrated_softmax(inference, classes, temperature)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.output.with_name(config.output.stem + ".tmp.keras")
    product.save(tmp)
    os.replace(tmp, config.output)
    return {"config": config.to_json(), "temperature": temperature, "model": str(config.output),
            "val_size": len(val_split),
            "validation": {"accuracy": after["accuracy"], "macro_f1": after["macro_f1"],
                           "ece_before_calibration": before["ece"], "ece_after_calibration": after["ece"],
                           "nll_before_calibration": before["nll"], "nll_after_calibration": after["nll"]}}


def train(
    config: TrainConfig,
    resume: bool = False,
    on_batch: Callable[[int, int, dict[str, float]], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume), calibrate and save; returns a summary (history, temperature, paths)."""
    train_split, val_split = load_train_val(config.data, config.val_dir)
    if config.limit:
        picks = np.random.default_rng(config.seed).permutation(len(train_split))[: config.limit]
        train_split = dataclasses.replace(train_split, images=train_split.images[picks], labels=train_split.labels[picks])
    log.info("train: %d images %s; validation: %d images", len(train_split), dict(zip(train_split.classes, train_split.counts().tolist())), len(val_split))

    folder = checkpoint_dir(config.output)
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    history: list[dict[str, float]] = []
    initial_epoch = 0
    if resume:
        state = json.loads((folder / "state.json").read_text())
        initial_epoch, history = state["epochs_done"], state["history"]
        network = keras.saving.load_model(folder / "last.keras")
        log.info("resuming after epoch %d of %d", initial_epoch, config.epochs)
    batches = AugmentedBatches(train_split, config.batch_size, config.seed, initial_epoch, class_weights(train_split, config.class_weight_power))
    if not resume:
        network = _initial_network(config, len(train_split.classes), len(batches) * config.epochs)
        _compile(network, config, len(batches))

    callbacks: list[keras.callbacks.Callback] = [_Checkpoint(folder, config, history)]
    if on_batch or on_epoch:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_train_batch_end=(lambda b, logs: on_batch(b + 1, len(batches), logs)) if on_batch else None,
                on_epoch_end=on_epoch,
            )
        )
    x_val, y_val = val_split.images[..., None].astype(np.float32), np.eye(len(val_split.classes), dtype=np.float32)[val_split.labels]
    if initial_epoch < config.epochs:
        network.fit(batches, epochs=config.epochs, initial_epoch=initial_epoch, validation_data=(x_val, y_val), validation_batch_size=256, callbacks=callbacks, verbose=0)

    summary = calibrate_and_save(network, config, list(train_split.classes), val_split)
    summary.update(history=history, train_size=len(train_split))
    _write_json_atomic(folder / "summary.json", summary)
    return summary
