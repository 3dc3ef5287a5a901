"""Landmark-aligned face crops: every face mapped onto the geometry of the model's training faces.

FER2013's faces are registered: roughly centred, eyes level and at a fixed height. A detector's box sits
differently on a face depending on the context around it, so a crop of the box frames faces unlike the
training images. Instead, a similarity transform (rotation, uniform scale, shift) maps MTCNN's five
landmarks (eyes, nose, mouth corners) onto the canonical positions measured on the training faces
(`find_landmarks` and `geometry_of`, stored in the model file) and the face is warped into a 48x48 grayscale crop.
Landmarks that no similarity can place near the canonical points (a profile, a bad regression) are
implausible: the caller falls back to the box crop.

Coordinates are pixel indices (pixel centres at integers), as MTCNN returns them and OpenCV warps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from emotiontrack.geometry.crops import square_crop
from emotiontrack.types import INPUT_SIZE

# An alignment is implausible when a landmark lands, on average, farther than this share of the canonical
# eye distance from its canonical point (a turned head, a landmark on the hairline), or when the face would
# be turned by more than MAX_ROLL_DEG (MTCNN's landmarks are unreliable there).
MAX_RESIDUAL = 0.25
MAX_ROLL_DEG = 50.0


@dataclass(frozen=True)
class Geometry:
    """Canonical landmark positions (5, 2) in the model's input frame (size x size pixels)."""

    landmarks: NDArray[np.float32]
    size: int = INPUT_SIZE

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    def to_json(self) -> list[list[float]]:
        return [[round(float(v), 3) for v in point] for point in self.landmarks]

    @classmethod
    def from_json(cls, points: Sequence[Sequence[float]]) -> Geometry:
        landmarks = np.asarray(points, np.float32)
        if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
            raise ValueError(f"canonical landmarks must be five (x, y) points, got {points!r}")
        return cls(landmarks)


def fit(landmarks: NDArray, geometry: Geometry) -> tuple[np.ndarray | None, float]:
    """The 2x3 similarity transform taking a face's landmarks (5, 2) onto the canonical ones (None when the
    landmarks are implausible), and the fit's residual: the root-mean-square distance, in the model's input
    pixels (48-px units), between the mapped landmarks and the canonical ones (NaN without a fit)."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        return None, math.nan
    matrix, _ = cv2.estimateAffinePartial2D(points, geometry.landmarks.astype(np.float64), method=cv2.LMEDS)
    if matrix is None:
        return None, math.nan
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    residual = float(np.sqrt(np.mean(np.sum((mapped - geometry.landmarks) ** 2, axis=1))))
    roll = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
    if residual > MAX_RESIDUAL * geometry.eye_distance or abs(roll) > MAX_ROLL_DEG:
        return None, residual
    return matrix, residual


def similarity(landmarks: NDArray, geometry: Geometry) -> np.ndarray | None:
    """The 2x3 similarity transform taking a face's landmarks (5, 2) onto the canonical ones, or None when
    the landmarks are implausible."""
    return fit(landmarks, geometry)[0]


SUPERSAMPLE = 2  # the warp samples a grid this much finer than the crop, then averages it down (less blur)


def warp_face(rgb: np.ndarray, matrix: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The (size, size) grayscale face that `matrix` (image -> crop pixels) maps out of an RGB image.

    A large face is first shrunk by area averaging (anti-aliased) to about SUPERSAMPLE times the crop's
    scale, then rotated and shifted onto a grid SUPERSAMPLE times finer than the crop, which is averaged
    down: bilinear sampling straight at the crop's scale would blur it. Parts outside the image repeat its
    edge pixels."""
    fine = size * SUPERSAMPLE
    # crop pixel x -> fine-grid pixel SUPERSAMPLE * x + (SUPERSAMPLE - 1) / 2 (pixel centres line up)
    to_fine = matrix * SUPERSAMPLE
    to_fine[:, 2] += (SUPERSAMPLE - 1) / 2
    scale = math.sqrt(abs(np.linalg.det(to_fine[:, :2])))
    inverse = cv2.invertAffineTransform(to_fine)
    centre = inverse @ np.array([(fine - 1) / 2, (fine - 1) / 2, 1.0])
    angle = math.atan2(matrix[1, 0], matrix[0, 0])
    side = fine / scale * (abs(math.cos(angle)) + abs(math.sin(angle)))  # the crop's preimage, bounded
    box = (centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2)
    region, (left, top, k) = square_crop(rgb, box, 1.0, max(fine, math.ceil(side * scale)))
    gray = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY) if region.ndim == 3 else region
    # Image pixel x = region pixel p / k + (left, top): fold that into the transform.
    local = np.empty((2, 3))
    local[:, :2] = to_fine[:, :2] / k
    local[:, 2] = to_fine[:, :2] @ np.array([left, top]) + to_fine[:, 2]
    warped = cv2.warpAffine(gray, local, (fine, fine), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)


def aligned_crop(rgb: np.ndarray, landmarks: NDArray, geometry: Geometry) -> tuple[np.ndarray | None, float]:
    """The face warped onto the canonical geometry (None when its landmarks are implausible), and the
    alignment's residual (`fit`)."""
    matrix, residual = fit(landmarks, geometry)
    return (None if matrix is None else warp_face(rgb, matrix, geometry.size)), residual


# FER2013's canonical landmarks, for models trained on images where too few faces are found to measure their
# own (e.g. the tests' textures). `python benchmarks/geometry.py ../shared/datasets/fer2013.zip`: MTCNN found
# landmarks on 907 of 1000 training faces; median absolute deviation 1.3-2.1 px per coordinate.
FER2013_GEOMETRY = Geometry(np.array([[14.522, 18.331], [32.478, 18.331], [23.5, 28.234], [15.823, 36.996],
                                      [31.177, 36.996]], np.float32))
MIN_FACES_MEASURED = 50

# Measuring the geometry: FER2013's faces fill their 48x48 frame, so MTCNN needs them enlarged and given some
# surroundings (the border repeated) to find them.
MEASURE_UPSCALE = 4
MEASURE_BORDER = 0.5  # of the enlarged face's side, on each side


MIRRORED = [1, 0, 2, 4, 3]  # landmark order after a left-right flip: eyes and mouth corners swap


def mirror(landmarks: NDArray, size: int) -> NDArray:
    """Landmarks (..., 5, 2) of the mirror image of a size x size frame, in landmark order."""
    flipped = np.array(landmarks, np.float64)[..., MIRRORED, :]
    flipped[..., 0] = size - 1 - flipped[..., 0]
    return flipped


def enlarged_for_detection(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A 48x48 grayscale training face as MTCNN can find it: enlarged MEASURE_UPSCALE times, its border
    repeated around it, RGB."""
    up = image.shape[0] * MEASURE_UPSCALE
    pad = round(up * MEASURE_BORDER)
    big = cv2.resize(image, (up, up), interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return np.asarray(cv2.cvtColor(big, cv2.COLOR_GRAY2RGB), np.uint8)


def find_landmarks(images: NDArray[np.uint8], detect_landmarks, batch_size: int = 64,
                   on_batch=None) -> NDArray[np.float32]:
    """Where MTCNN puts the five landmarks of each training face (n, 48, 48), in the face's own pixel frame:
    (n, 5, 2), NaN where it finds no face.

    `detect_landmarks(list of RGB images) -> list of (5, 2) arrays or None` is the detector's landmark
    regression (MTCNNDetector.central_landmarks); `on_batch(done)` reports progress."""
    size = images.shape[1]
    pad = round(size * MEASURE_UPSCALE * MEASURE_BORDER)
    out = np.full((len(images), 5, 2), np.nan, np.float32)
    for start in range(0, len(images), batch_size):
        batch = [enlarged_for_detection(image) for image in images[start : start + batch_size]]
        for i, points in enumerate(detect_landmarks(batch)):
            if points is not None:
                # enlarged-image pixel index -> 48x48 pixel index (centres of pixels at integers in both)
                out[start + i] = (np.asarray(points, np.float64) - pad + 0.5) / MEASURE_UPSCALE - 0.5
        if on_batch:
            on_batch(min(start + batch_size, len(images)))
    return out


def geometry_of(landmarks: NDArray, size: int = INPUT_SIZE) -> tuple[Geometry, dict]:
    """The canonical geometry of faces whose landmarks (n, 5, 2; NaN where none was found) are known: the
    median of where each landmark falls, made left-right symmetric (the model is trained on mirrored faces
    too and averages each face with its mirror image). Returns it and statistics of the spread."""
    points = np.asarray(landmarks, np.float64)
    points = points[np.isfinite(points).all(axis=(1, 2))]
    if not len(points):
        return FER2013_GEOMETRY, {"faces": len(landmarks), "found": 0}
    median = np.median(points, axis=0)
    spread = np.median(np.abs(points - median), axis=0)
    geometry = Geometry(((median + mirror(median, size)) / 2).astype(np.float32), size)
    stats = {"faces": len(landmarks), "found": len(points), "median": [[round(float(v), 3) for v in p] for p in median],
             "canonical": geometry.to_json(),
             "median_abs_deviation": [[round(float(v), 3) for v in p] for p in spread],
             "registration": registration_spread(points, geometry)}
    return geometry, stats


def registration_spread(points: NDArray, geometry: Geometry) -> dict[str, list[float]]:
    """How far faces (n, 5, 2) sit from the canonical geometry: the 5th and 95th percentiles of the rotation
    (degrees), scale and shift (pixels) of the similarity that would align each one. Training augmentation
    should cover this range (plus the error of aligning video faces)."""
    params = []
    for face in points:
        matrix, _ = cv2.estimateAffinePartial2D(face, geometry.landmarks.astype(np.float64), method=cv2.LMEDS)
        if matrix is not None:
            centre = np.array([(geometry.size - 1) / 2] * 2)
            shift = matrix[:, :2] @ centre + matrix[:, 2] - centre  # where the frame's centre goes
            params.append([math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])),
                           math.hypot(matrix[0, 0], matrix[1, 0]), shift[0], shift[1]])
    low, high = np.percentile(np.asarray(params), [5, 95], axis=0)
    return {name: [round(float(a), 3), round(float(b), 3)]
            for name, a, b in zip(("rotation_deg", "scale", "shift_x_px", "shift_y_px"), low, high)}
