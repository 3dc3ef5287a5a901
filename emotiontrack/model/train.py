"""Train the emotion CNN on a folder-per-emotion dataset, with checkpoints, resume and calibration.

`train(config, detector)` fits `network.TrainingNet` (torch modules, bf16 autocast and channels-last on CPU, so
that bf16 units run the convolutions) with SGD + Nesterov momentum or AdamW on label-smoothed, optionally
class-weighted cross-entropy, under a warm-up + cosine learning-rate schedule. Every batch is augmented
(flip, small affine, brightness/contrast, erasing; optionally mixup). After every epoch it scores the
validation split and writes `<output>.ckpt/last.pt` (weights, optimiser state, history, RNG state), so
`resume` continues an interrupted run exactly. With `swa_epochs`, the last epochs run at a constant rate
and the network saved is the average of their weights (torch's `swa_utils`). At the end it writes the weights into the Keras network
(`model.keras_network`), fits a softmax temperature on the validation split and saves the product model
(`CalibratedSoftmax` head) to `config.output`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.special import softmax
from torch.optim.swa_utils import AveragedModel, update_bn

from emotiontrack.errors import EmotionTrackError
from emotiontrack.geometry.align import Geometry, similarity
from emotiontrack.model.augment import AlignedViews, aligned_views, batches, class_weights, scene_views
from emotiontrack.model.calibrate import calibrate_and_save, measured_geometry, training_geometry
from emotiontrack.model.checkpoint import checkpoint_dir, load_checkpoint, restore, save_checkpoint, write_json_atomic
from emotiontrack.model.dataset import Split, load_train_val
from emotiontrack.model.distill import teacher_targets
from emotiontrack.model.evaluate import classification_report
from emotiontrack.model.landmarks import LandmarkDetector, split_landmarks
from emotiontrack.model.network import TrainingNet, as_batch, predict_logits
from emotiontrack.model.settings import LANDMARK_CACHE, OPTIMIZERS, Architecture, TrainConfig
from emotiontrack.runtime import cpu_has_bf16

log = logging.getLogger(__name__)

def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up to the peak, cosine decay to the floor (zero, or `swa_lr` when the last epochs average
    weights), then the floor for the averaged epochs."""
    floor = config.swa_lr if config.swa_epochs else 0.0
    decay_end = (config.epochs - config.swa_epochs) * steps_per_epoch
    peak = config.learning_rate if decay_end > 0 else floor  # only averaged epochs: warm up to their rate
    warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= decay_end:
        return floor
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, decay_end - warmup)))


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


class _Step:
    """One optimisation step on a batch: soft targets (smoothed labels, the teachers' probabilities, mixup),
    class weights, bf16 forward, fp32 update."""

    def __init__(self, net: TrainingNet, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 weights: NDArray[np.float32], labels: NDArray[np.int64], teacher: NDArray[np.float32] | None = None):
        self.net, self.optimizer, self.config = net, optimizer, config
        self.class_weight = torch.from_numpy(weights)
        smoothed = np.eye(net.n_classes)[labels] * (1 - config.label_smoothing) + config.label_smoothing / net.n_classes
        if teacher is not None:
            smoothed = (1 - config.distill_weight) * smoothed + config.distill_weight * teacher
        self.labels, self.targets = torch.from_numpy(labels), torch.from_numpy(smoothed.astype(np.float32))

    def __call__(self, images: NDArray[np.float32], picks: NDArray[np.int64], rng: np.random.Generator) -> tuple[float, float]:
        """Train on augmented `images`, the split's faces at `picks`; the batch's loss and accuracy."""
        x, y, targets = as_batch(images), self.labels[picks], self.targets[picks]
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


def _validate(net: TrainingNet, val_split: Split, config: TrainConfig,
              views: dict[str, NDArray[np.uint8]] | None = None) -> dict[str, float]:
    """Validation scores; and for each of `views` (the validation faces framed otherwise: "aligned" as analyze
    crops them, "scene" in a held-out scene), `val_<name>_accuracy`."""
    logits = predict_logits(net, val_split.images, config.flip_average, config.bf16)
    report = classification_report(softmax(logits, axis=1), val_split.labels, list(val_split.classes))
    scores = {"val_loss": report["nll"], "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}
    for name, images in (views or {}).items():
        logits = predict_logits(net, images, config.flip_average, config.bf16)
        scores[f"val_{name}_accuracy"] = float((logits.argmax(1) == val_split.labels).mean())
    return scores


def alignments(landmarks: NDArray, geometry: Geometry) -> NDArray[np.float32]:
    """Per face, the similarity (n, 2, 3) that analyze's aligned crop would apply; NaN where none."""
    out = np.full((len(landmarks), 2, 3), np.nan, np.float32)
    for i, points in enumerate(landmarks):
        matrix = similarity(points, geometry) if np.isfinite(points).all() else None
        if matrix is not None:
            out[i] = matrix
    return out


@dataclasses.dataclass(frozen=True)
class _Framing:
    """How faces are framed for training and validation: the canonical geometry and, when training on
    aligned views, the views and the validation faces cropped the same way."""

    geometry: Geometry | None
    stats: dict[str, Any]
    views: AlignedViews | None = None
    val_views: dict[str, NDArray[np.uint8]] = dataclasses.field(default_factory=dict)  # see _validate


def _framing(config: TrainConfig, train_split: Split, val_split: Split, cache_dir: Path,
             detector: LandmarkDetector) -> _Framing:
    if config.aligned_views <= 0:
        return _Framing(None, {})
    train_landmarks = split_landmarks(train_split, cache_dir, detector)
    geometry, stats = measured_geometry(train_landmarks)
    views = AlignedViews(alignments(train_landmarks, geometry), config.aligned_views, config.scene_views)
    val_matrices = alignments(split_landmarks(val_split, cache_dir, detector), geometry)
    log.info("aligned views: %d of %d training faces can be aligned (canonical landmarks %s)",
             int(np.isfinite(views.matrices).all(axis=(1, 2)).sum()), len(train_split), geometry.to_json())
    val_views = {"aligned": aligned_views(val_split.images, val_matrices)}
    if config.scene_views > 0:
        val_views["scene"] = scene_views(val_split.images, val_matrices)
    return _Framing(geometry, stats, views, val_views)


def _initial_network(config: TrainConfig, n_classes: int, resume: bool) -> TrainingNet:
    torch.manual_seed(config.seed)
    net = TrainingNet(config.network_architecture(), n_classes)
    if config.init is not None and not resume:  # a resumed run's weights come from its own checkpoint
        state = load_checkpoint(config.init)
        if "model" not in state or not Architecture.from_json(state["architecture"]).same_weights(net.architecture) \
                or len(state["classes"]) != n_classes:
            raise EmotionTrackError(f"--init: {config.init} is not a training checkpoint of a {config.architecture} "
                                    f"network with {n_classes} classes (use OUTPUT.ckpt/last.pt of an earlier run)")
        net.load_state_dict(state["model"])
    return net.to(memory_format=torch.channels_last)


def _limited(split: Split, config: TrainConfig) -> Split:
    if not config.limit:
        return split
    picks = np.random.default_rng(config.seed).permutation(len(split))[: config.limit]
    return dataclasses.replace(split, images=split.images[picks], labels=split.labels[picks])


@dataclasses.dataclass
class _Run:
    """What one training run works on: its data, framing, network, optimiser, average and history."""

    config: TrainConfig
    train_split: Split
    val_split: Split
    framing: _Framing
    folder: Path
    step: _Step
    average: AveragedModel | None
    history: list[dict[str, float]]

    @property
    def classes(self) -> list[str]:
        return list(self.train_split.classes)


def train(config: TrainConfig, detector: LandmarkDetector, resume: bool = False,
          on_batch: Callable[[int, int, dict[str, float]], None] | None = None,
          on_epoch: Callable[[int, dict[str, float]], None] | None = None,
          cache_dir: Path = LANDMARK_CACHE) -> dict[str, Any]:
    """Train (or resume), calibrate and save; returns a summary (history, temperature, paths). `detector`
    finds the training faces' landmarks (the face geometry saved with the model, and aligned views)."""
    run = _start(config, detector, resume, cache_dir)
    config, net = run.config, run.step.net
    for epoch in range(len(run.history), config.epochs):
        started = time.monotonic()
        logs = {"epoch": epoch + 1, **_run_epoch(run.step, run.train_split, epoch, on_batch, run.framing.views)}
        if run.average is not None and epoch >= config.epochs - config.swa_epochs:
            run.average.update_parameters(net)
        logs.update(_validate(net, run.val_split, config, run.framing.val_views))
        logs["train_seconds"] = (run.history[-1]["train_seconds"] if run.history else 0.0) + time.monotonic() - started
        run.history.append(logs)
        log.info("epoch %d/%d: %s", epoch + 1, config.epochs, ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        save_checkpoint(run.folder, {"epochs_done": epoch + 1, "config": config.to_json(), "history": run.history,
                                      "train_seconds": logs["train_seconds"], "model": net.state_dict(),
                                      "optimizer": run.step.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                                      "architecture": net.architecture.to_json(), "classes": run.classes,
                                      "average": run.average.state_dict() if run.average is not None else None})
        if on_epoch:
            on_epoch(epoch, logs)
    return _finish(run, detector)


def _start(config: TrainConfig, detector: LandmarkDetector, resume: bool, cache_dir: Path) -> _Run:
    """The data, framing, network and optimiser of a run (restored from its checkpoint with `resume`)."""
    if config.swa_epochs > config.epochs:
        raise EmotionTrackError(f"--swa-epochs {config.swa_epochs} is more than --epochs {config.epochs}")
    if config.bf16 and not cpu_has_bf16():
        log.warning("this CPU has no bf16 instructions: training in float32 (emulated bf16 is ~10x slower)")
        config = dataclasses.replace(config, bf16=False)
    train_split, val_split = load_train_val(config.data, config.val_dir)
    train_split = _limited(train_split, config)
    framing = _framing(config, train_split, val_split, cache_dir, detector)
    log.info("train: %d images %s; validation: %d images", len(train_split),
             dict(zip(train_split.classes, train_split.counts().tolist())), len(val_split))
    folder = checkpoint_dir(config.output)
    folder.mkdir(parents=True, exist_ok=True)
    net = _initial_network(config, len(train_split.classes), resume)
    optimizer = _optimizer(net, config)
    average = AveragedModel(net) if config.swa_epochs else None
    history = restore(folder, net, optimizer, average) if resume else []
    teacher = teacher_targets(config.teachers, train_split, folder) if config.teachers else None
    step = _Step(net, optimizer, config, class_weights(train_split, config.class_weight_power), train_split.labels, teacher)
    return _Run(config, train_split, val_split, framing, folder, step, average, history)


def _finish(run: _Run, detector: LandmarkDetector) -> dict[str, Any]:
    """The face geometry, the averaged weights (if any), calibration, the saved model and the run's summary."""
    config, net = run.config, run.step.net
    if run.framing.geometry is not None:  # measured on every training face
        geometry, geometry_stats = run.framing.geometry, run.framing.stats
    else:
        geometry, geometry_stats = training_geometry(run.train_split, detector, config.seed)
    log.info("canonical landmarks %s (found on %d of %d training faces)", geometry.to_json(),
             geometry_stats["found"], geometry_stats["faces"])
    if run.average is not None:
        net = _averaged_network(run.average, config, run.train_split, run.framing.views)
        averaged = _validate(net, run.val_split, config, run.framing.val_views)
        log.info("weights averaged over the last %d epochs: %s", config.swa_epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in averaged.items()))
    summary = calibrate_and_save(net, config, run.classes, run.val_split, geometry)
    summary.update(history=run.history, train_size=len(run.train_split), architecture=net.architecture.to_json(),
                   geometry=geometry_stats)
    write_json_atomic(run.folder / "summary.json", summary)
    return summary


def _averaged_network(average: AveragedModel, config: TrainConfig, split: Split,
                      views: AlignedViews | None) -> TrainingNet:
    """The averaged weights, with BatchNorm statistics measured for them on one epoch of training batches
    (those of the weights it averages do not fit the average)."""
    net = average.module
    assert isinstance(net, TrainingNet)
    epoch = batches(split, config.batch_size, config.seed, config.epochs, views)
    with _autocast(config):
        update_bn((as_batch(images) for images, _ in epoch), net)
    return net


def _run_epoch(step: _Step, split: Split, epoch: int, on_batch: Callable[[int, int, dict[str, float]], None] | None,
               views: AlignedViews | None = None) -> dict[str, float]:
    """One pass over the training split; mean loss and accuracy on its (augmented) batches."""
    config = step.config
    steps_per_epoch = math.ceil(len(split) / config.batch_size)
    step.net.train()
    sums = np.zeros(2)
    for index, (images, picks) in enumerate(batches(split, config.batch_size, config.seed, epoch, views)):
        for group in step.optimizer.param_groups:
            group["lr"] = learning_rate(config, epoch * steps_per_epoch + index, steps_per_epoch)
        sums += step(images, picks, np.random.default_rng([config.seed, epoch, index, 1]))
        if on_batch:
            on_batch(index + 1, steps_per_epoch, {"loss": sums[0] / (index + 1), "accuracy": sums[1] / (index + 1)})
    return {"loss": sums[0] / steps_per_epoch, "accuracy": sums[1] / steps_per_epoch,
            "lr": step.optimizer.param_groups[0]["lr"]}
