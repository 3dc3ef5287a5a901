"""Soft targets from an ensemble of saved models, for distilling it into the network being trained.

`emotiontrack train --teacher A.keras --teacher B.keras` computes, once per run, every training face's
averaged calibrated probabilities under the teachers (each exactly as `evaluate` scores it, with the mirror
image where the model averages it) and mixes them into the training targets (`TrainConfig.distill_weight`).
They are kept in the run's checkpoint folder, so a resumed run does not compute them again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from emotiontrack.errors import EmotionTrackError
from emotiontrack.files import atomic_file
from emotiontrack.model.dataset import Split
from emotiontrack.types import EMOTIONS

log = logging.getLogger(__name__)


def teacher_targets(teachers: Sequence[Path], split: Split, folder: Path) -> NDArray[np.float32]:
    """(n, len(split.classes)) mean calibrated probabilities of the teachers, in the split's class order;
    read from `folder` when this split and these teachers' files were scored there before."""
    missing = sorted(set(split.classes) - set(EMOTIONS))
    if missing:
        raise EmotionTrackError(f"--teacher: the teachers know {list(EMOTIONS)}, not the classes {missing}")
    key = hashlib.sha256(split.images.tobytes())
    for path in teachers:
        if not Path(path).is_file():
            raise EmotionTrackError(f"--teacher: model not found: {path}")
        key.update(Path(path).read_bytes())
    cache = folder / f"teacher-targets-{key.hexdigest()[:16]}.npy"
    if cache.is_file():
        return np.load(cache)
    targets = np.mean([_probabilities(Path(path), split) for path in teachers], axis=0).astype(np.float32)
    with atomic_file(cache) as tmp, tmp.open("wb") as out:  # a run killed while saving leaves no half file
        np.save(out, targets)
    return targets


def _probabilities(path: Path, split: Split) -> NDArray[np.float32]:
    from emotiontrack.model.evaluate import predict_in_batches
    from emotiontrack.model.predictor import EmotionModel

    log.info("teacher %s: scoring %d training faces", path, len(split))
    model = EmotionModel.load(path)  # dataset images are face crops already
    probs = predict_in_batches(model, split.images)[:, [EMOTIONS.index(name) for name in split.classes]]
    return probs / probs.sum(axis=1, keepdims=True)  # a split with fewer classes than the teachers know
