"""Training batches: shuffled, augmented FER2013-style faces, and per-class loss weights.

The augmentation covers how faces sit in the crops `analyze` makes and how they look (flip, brightness,
contrast, occluders). A face is shown either as the dataset frames it (with a random rotation, scale and
shift that cover FER2013's loose registration) or, with `AlignedViews`, as `analyze` would crop it from a
video: warped by the similarity that maps its own landmarks onto the canonical ones, with a small jitter
for the error of video landmarks, and whatever lies outside the picture filled as a video's context might
be (the edge repeated, mirrored, or a flat grey). Without such views the model meets zoomed-out, framed
crops only in videos.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from emotiontrack.model.dataset import Split
from emotiontrack.model.scenes import HELD_OUT_PHOTOS, in_scene, photographs, scene_offset
from emotiontrack.types import INPUT_SIZE


@dataclass(frozen=True)
class AlignedViews:
    """Per training face, the 2x3 similarity (n, 2, 3) that aligns it as `analyze` would (NaN where its
    landmarks were not found or are implausible), and the share of faces shown that way."""

    matrices: NDArray[np.float32]
    share: float
    scenes: float = 0.0  # share of aligned views shown in a scene (scenes.py) rather than with a border fill

    def for_batch(self, indices: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.float32]:
        """The matrices of a batch's faces, NaN for those to be shown as the dataset frames them."""
        matrices = self.matrices[indices].copy()
        matrices[rng.random(len(indices)) >= self.share] = np.nan
        return matrices


# Jitter of an aligned view: the error of landmarks found on video frames (a few pixels at 48x48, tilted
# heads) rather than FER2013's own registration, which the plain views cover.
ALIGNED_JITTER = {"degrees": 6.0, "scale": 0.06, "shift_px": 2.0}
# What a video shows around a face, in the part of an aligned crop beyond the picture.
CONTEXT_BORDERS = (cv2.BORDER_REPLICATE, cv2.BORDER_REFLECT_101, cv2.BORDER_CONSTANT)


def batches(split: Split, batch_size: int, seed: int, epoch: int,
            views: AlignedViews | None = None) -> Iterator[tuple[NDArray[np.float32], NDArray[np.int64]]]:
    """One epoch of shuffled, augmented batches: (images (n, 48, 48) float32, their indices in the split); the
    randomness depends only on (seed, epoch), so a resumed run sees the batches it would have seen."""
    order = np.random.default_rng([seed, epoch]).permutation(len(split))
    for index, start in enumerate(range(0, len(order), batch_size)):
        picks = order[start : start + batch_size]
        rng = np.random.default_rng([seed, epoch, index])
        if views is None:
            yield augment(split.images[picks], rng), picks
        else:  # a generator of their own: the other faces get the draws they get without views
            views_rng = np.random.default_rng([seed, epoch, index, 2])
            yield augment(split.images[picks], rng, views.for_batch(picks, views_rng), views_rng, views.scenes), picks


def augment(images: NDArray[np.uint8], rng: np.random.Generator, aligned: NDArray[np.float32] | None = None,
            aligned_rng: np.random.Generator | None = None, scenes: float = 0.0) -> NDArray[np.float32]:
    """Random flip, rotation (±12°), scale (±12%), shift (±10%), brightness/contrast and erasing. Faces with
    a finite matrix in `aligned` (n, 2, 3) are warped by it instead, with ALIGNED_JITTER and, drawn from
    `aligned_rng`, a random CONTEXT_BORDERS fill or (a share `scenes` of them) a scene around the face."""
    n, size = len(images), INPUT_SIZE
    out = np.empty((n, size, size), np.float32)
    angles = rng.uniform(-12, 12, n)
    scales = rng.uniform(0.88, 1.12, n)
    shifts = rng.uniform(-0.1, 0.1, (n, 2)) * size
    flips = rng.random(n) < 0.5
    for i in range(n):
        if aligned is not None and np.isfinite(aligned[i]).all():
            out[i] = _aligned_view(images[i], aligned[i], flips[i], aligned_rng or rng, scenes)
            continue
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


def _aligned_view(image: NDArray[np.uint8], matrix: NDArray, flip: bool, rng: np.random.Generator,
                  scenes: float = 0.0) -> NDArray[np.float32]:
    """The face as an aligned video crop: its alignment, then a jitter about the crop's centre; mirrored after
    the warp (the canonical geometry is left-right symmetric). With probability `scenes` the face is first
    put in a scene (scenes.in_scene), whose pixels then lie around it instead of a border fill."""
    size = INPUT_SIZE
    jitter = np.asarray(cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2),
                                                rng.uniform(-1, 1) * ALIGNED_JITTER["degrees"],
                                                1 + rng.uniform(-1, 1) * ALIGNED_JITTER["scale"]), np.float64)
    jitter[:, 2] += rng.uniform(-1, 1, 2) * ALIGNED_JITTER["shift_px"]
    m = jitter[:, :2] @ matrix + np.append(np.zeros((2, 2)), jitter[:, 2:], axis=1)
    if scenes > 0 and rng.random() < scenes:  # no draw without scenes: older runs see the batches they saw
        pad = scene_offset(image.shape[0])
        image = in_scene(image, photographs(), rng)
        m[:, 2] -= m[:, :2] @ np.array([pad, pad], np.float64)  # scene pixel p is face pixel p - pad
        border, value = cv2.BORDER_REPLICATE, 0.0
    else:
        border = CONTEXT_BORDERS[int(rng.integers(len(CONTEXT_BORDERS)))]
        value = float(rng.uniform(0, 255))
    view = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=value)
    return (view[:, ::-1] if flip else view).astype(np.float32)


def aligned_views(images: NDArray[np.uint8], matrices: NDArray, border: int = cv2.BORDER_REPLICATE,
                  value: float = 0.0) -> NDArray[np.uint8]:
    """Faces (n, 48, 48) warped by their alignments (n, 2, 3), without jitter; faces without one as they are
    (`value`: the grey of a BORDER_CONSTANT fill). For scoring a model on crops framed as `analyze` frames them."""
    out = images.copy()
    for i in np.flatnonzero(np.isfinite(matrices).all(axis=(1, 2))):
        out[i] = cv2.warpAffine(images[i], matrices[i].astype(np.float64), (INPUT_SIZE, INPUT_SIZE),
                                flags=cv2.INTER_LINEAR, borderMode=border, borderValue=value)
    return out


def scene_views(images: NDArray[np.uint8], matrices: NDArray, seed: int = 0) -> NDArray[np.uint8]:
    """Faces (n, 48, 48) in scenes of the held-out photographs (scenes.HELD_OUT_PHOTOS, never trained on),
    aligned by their matrices (n, 2, 3) without jitter; faces without one as they are. The same views for a
    given seed: for scoring a model on faces that belong to a scene."""
    photos = photographs(HELD_OUT_PHOTOS)
    out = images.copy()
    for i in np.flatnonzero(np.isfinite(matrices).all(axis=(1, 2))):
        rng = np.random.default_rng([seed, int(i)])
        pad = scene_offset(INPUT_SIZE)
        m = matrices[i].astype(np.float64)
        m[:, 2] -= m[:, :2] @ np.array([pad, pad], np.float64)
        out[i] = cv2.warpAffine(in_scene(images[i], photos, rng), m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def class_weights(split: Split, power: float) -> NDArray[np.float32]:
    counts = split.counts().astype(np.float64)
    weights = (counts.max() / counts) ** power
    return (weights / np.average(weights, weights=counts)).astype(np.float32)
