"""The five MTCNN landmarks of every face of a training split, found once and cached.

Training on aligned views (`augment.py`) needs, for each training face, the similarity that `analyze`
would apply to it in a video: that is where MTCNN puts its landmarks. Finding them takes MTCNN tens of ms a
face (about 35 minutes for FER2013's 28,709 training faces on 2 cores), so the result is kept in a
cache file named after a hash of the images: a later run on the same data reads it in a moment.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from emotiontrack.files import atomic_file
from emotiontrack.geometry.align import MEASURE_BORDER, MEASURE_UPSCALE, find_landmarks
from emotiontrack.model.dataset import Split

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the way landmarks are found changes


class LandmarkDetector(Protocol):
    """Finds the five landmarks of the face near the middle of each image (`stages.detect.MTCNNDetector` with
    min_face=20: the faces are enlarged to 4x48 px). Passed in by the caller, so that training needs no
    import of the analysis stages."""

    def central_landmarks(self, images: Sequence[NDArray[np.uint8]]) -> list[NDArray | None]: ...


def cache_path(split: Split, cache_dir: Path) -> Path:
    digest = hashlib.sha256(np.ascontiguousarray(split.images).tobytes())
    digest.update(f"{CACHE_VERSION}/{MEASURE_UPSCALE}/{MEASURE_BORDER}".encode())
    return cache_dir / f"landmarks-{len(split)}-{digest.hexdigest()[:16]}.npy"


def split_landmarks(split: Split, cache_dir: Path, detector: LandmarkDetector,
                    on_progress: Callable[[int, int], None] | None = None) -> NDArray[np.float32]:
    """Landmarks (n, 5, 2) of the split's faces in their 48x48 frames, NaN where MTCNN finds no face."""
    path = cache_path(split, cache_dir)
    if path.is_file():
        landmarks = np.load(path)
        if landmarks.shape == (len(split), 5, 2):
            return landmarks
        log.warning("%s does not match the split: finding the landmarks again", path)
    log.info("finding the landmarks of %d faces (once; cached in %s)", len(split), path)
    progress = (lambda done: on_progress(done, len(split))) if on_progress else None
    landmarks = find_landmarks(split.images, detector.central_landmarks, on_batch=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, landmarks)
    log.info("landmarks found on %d of %d faces", int(np.isfinite(landmarks).all(axis=(1, 2)).sum()), len(split))
    return landmarks
