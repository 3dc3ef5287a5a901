"""What a training run is: the network's architecture and the run's settings, without importing torch
(the CLI shows them in `--help`; checkpoints store them as JSON)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotiontrack.errors import EmotionTrackError
from emotiontrack.types import INPUT_SIZE


@dataclass(frozen=True)
class Architecture:
    """What the network is; stored in checkpoints so that a run resumes with the same network."""

    blocks: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 2), (512, 2))  # (filters, convs) per block
    dense: int = 256
    block_dropout: float = 0.1  # after each block's pooling
    head_dropout: float = 0.5  # before the logits
    epsilon: float = 1e-5  # BatchNorm's (torch's default; the Keras layers are given the same)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Architecture:
        return cls(**{**data, "blocks": tuple(tuple(b) for b in data["blocks"])})

    def same_weights(self, other: Architecture) -> bool:
        """Whether the two networks have the same weights' shapes (dropout rates aside)."""
        return (self.blocks, self.dense, self.epsilon) == (other.blocks, other.dense, other.epsilon)

    def flat_features(self) -> int:
        side = INPUT_SIZE // 2 ** len(self.blocks)
        return side * side * self.blocks[-1][0]


ARCHITECTURES: dict[str, Architecture] = {
    "vgg-s": Architecture(blocks=((32, 1), (64, 2), (128, 2), (256, 2)), block_dropout=0.25),  # until 0.2
    "vgg-m": Architecture(blocks=((48, 2), (96, 2), (192, 2), (384, 2))),
    "vgg-l": Architecture(),
}
DEFAULT_ARCHITECTURE = "vgg-l"


OPTIMIZERS = ("sgd", "adamw")

# Where the training faces' landmarks are kept once found (landmarks.py); not part of a run's settings.
LANDMARK_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emotiontrack"


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    output: Path = Path("models/emotiontrack.keras")
    val_dir: Path | None = None
    architecture: str = DEFAULT_ARCHITECTURE  # a name in network.ARCHITECTURES
    block_dropout: float | None = None  # dropout after each block's pooling; None: the architecture's own
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9) or "adamw"
    learning_rate: float = 0.05  # peak, after the warm-up
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero (or to `swa_lr`)
    # Stochastic weight averaging (Izmailov et al. 2018): the last `swa_epochs` epochs run at the constant
    # `swa_lr`, and the saved network is the mean of the weights at the end of each of them, with its
    # BatchNorm statistics measured again on training batches. 0 turns it off.
    swa_epochs: int = 0
    swa_lr: float = 0.005
    seed: int = 0
    label_smoothing: float = 0.1
    # Per-class loss weight = (n_largest / n_class) ** power: 0 ignores imbalance, 1 fully balances.
    class_weight_power: float = 0.3
    mixup: float = 0.0  # Beta(a, a) mixing of image pairs; 0 turns it off
    # Share of training faces shown as `analyze` crops them from video (aligned on their own MTCNN landmarks,
    # augment.AlignedViews); 0 shows every face as the dataset frames it.
    aligned_views: float = 0.0
    # Share of those aligned views in which the face belongs to a scene (model/scenes.py: pasted through a
    # soft ellipse onto a photograph, degraded as video degrades it) instead of a border fill.
    scene_views: float = 0.0
    limit: int | None = None  # use at most this many training images (quick runs and tests)
    # The saved model averages the logits of each face and its mirror image (twice the inference cost).
    flip_average: bool = True
    # Start from this checkpoint's weights (OUTPUT.ckpt/last.pt of an earlier run) with a fresh schedule.
    init: Path | None = None
    # Distillation: saved models whose averaged probabilities (model.distill) make up `distill_weight` of
    # every training target, the label (smoothed) the rest.
    teachers: tuple[Path, ...] = ()
    distill_weight: float = 0.5
    bf16: bool = True  # bf16 autocast for the forward pass (fp32 weights and optimiser state)

    def to_json(self) -> dict[str, Any]:
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        return {**values, "teachers": [str(p) for p in self.teachers]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        paths = {"data", "output", "val_dir", "init"}
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: (Path(v) if k in paths and v is not None else v) for k, v in data.items() if k in known}
        return cls(**{**values, "teachers": tuple(Path(p) for p in data.get("teachers", ()))})

    def network_architecture(self) -> Architecture:
        if self.architecture not in ARCHITECTURES:
            raise EmotionTrackError(f"unknown architecture {self.architecture!r}: choose from {sorted(ARCHITECTURES)}")
        named = ARCHITECTURES[self.architecture]
        if self.block_dropout is None:
            return named
        return dataclasses.replace(named, block_dropout=self.block_dropout)
