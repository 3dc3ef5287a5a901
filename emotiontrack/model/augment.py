"""Training batches: shuffled, augmented FER2013-style faces, and per-class loss weights.

The augmentation covers how faces sit in the crops `analyze` makes (aligned on the landmarks: the
residual rotation, scale and shift of alignment and of FER2013's own registration) and how they look
(flip, brightness, contrast, occluders).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
from numpy.typing import NDArray

from emotiontrack.model.dataset import Split
from emotiontrack.types import INPUT_SIZE


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
    for k in np.flatnonzero(rng.random(n) < 0.25):  # random erasing: robustness to hands and occluders
        h, w = (int(v) for v in rng.integers(8, 20, 2))
        y, x = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
        out[k, y : y + h, x : x + w] = rng.uniform(0, 255)
    return out


def class_weights(split: Split, power: float) -> NDArray[np.float32]:
    counts = split.counts().astype(np.float64)
    weights = (counts.max() / counts) ** power
    return (weights / np.average(weights, weights=counts)).astype(np.float32)
