"""Faces that belong to a scene, for training: each face pasted through a soft ellipse onto a photograph.

In real footage a face's edges are its scene (hair, a wall, a street), not a border: FER2013's 48x48 images
end in their own cheeks, chin and forehead. A scene view replaces what lies outside a random soft ellipse
around the face with a patch of a natural photograph, then degrades the whole as video does (the resolution
of a smaller face, blur, compression), before the face is aligned and cropped as `analyze` would
(augment.py). The photographs come from scikit-image; those in HELD_OUT_PHOTOS are kept for the
benchmark of faces in scenes (benchmarks/wild.py), never trained on.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from numpy.typing import NDArray

TRAINING_PHOTOS = ("chelsea", "rocket", "coins", "brick", "grass", "gravel", "moon", "clock", "immunohistochemistry",
                   "hubble_deep_field", "retina", "camera", "horse")
HELD_OUT_PHOTOS = ("coffee", "stereo_motorcycle", "astronaut")  # benchmarks/wild.py's scenes
# The soft ellipse the face shows through, in units of the face image's side: semi-axes (horizontal,
# vertical), its soft edge, and how far its centre may sit off the image's centre. The edge is either a
# linear ramp FEATHER wide or, as often, the hard ellipse blurred with a Gaussian of sigma FEATHER, which lets
# the photograph show through well inside the face (the harder case: benchmarks/wild.py renders it).
ELLIPSE_AXES = ((0.42, 0.50), (0.50, 0.60))
FEATHER = (0.1, 0.3)
GAUSSIAN_EDGE_P = 0.5
ELLIPSE_OFFSET = 0.04
# Video's losses, each applied to half of the scenes: the face resampled to a share of its side and back (a
# smaller face), a Gaussian blur (sigma in 48-px units), and JPEG compression at a random quality.
RESOLUTION = (0.55, 1.0)
BLUR_SIGMA = (0.3, 0.9)
JPEG_QUALITY = (30, 95)
DEGRADE_P = 0.5
CANVAS = 2  # the scene patch is this many times the face's side, so a tilt or shift never leaves it
MIN_PHOTO_SIDE = 256


@functools.cache
def photographs(names: tuple[str, ...] = TRAINING_PHOTOS) -> tuple[NDArray[np.uint8], ...]:
    """scikit-image's photographs as grayscale images whose short side is at least MIN_PHOTO_SIDE."""
    from skimage import data

    out = []
    for name in names:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo pairs: the left view
        gray = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        gray = np.asarray(gray if gray.dtype == np.uint8 else np.clip(gray * 255, 0, 255), np.uint8)
        scale = max(1.0, MIN_PHOTO_SIDE / min(gray.shape))
        out.append(np.asarray(cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1
                              else gray, np.uint8))
    return tuple(out)


def soft_ellipse(size: int, centre: tuple[float, float], axes: tuple[float, float], feather: float,
                 gaussian: bool = False) -> NDArray[np.float32]:
    """A (size, size) mask: 1 inside the ellipse, 0 outside, and across its edge a linear ramp `feather` pixels
    wide, or (`gaussian`) the hard ellipse blurred by a Gaussian of sigma `feather` pixels."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    rho = np.sqrt(((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2)
    if gaussian:
        return np.asarray(cv2.GaussianBlur((rho <= 1).astype(np.float32), (0, 0), feather), np.float32)
    return np.clip(0.5 + (1 - rho) * min(axes) / feather, 0, 1).astype(np.float32)


def photo_patch(photos: tuple[NDArray[np.uint8], ...], side: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    """A random square region of a random photograph (a quarter to all of its short side), resized to `side`."""
    photo = photos[int(rng.integers(len(photos)))]
    height, width = photo.shape
    region = int(rng.uniform(0.25, 1.0) * min(height, width))
    y, x = int(rng.integers(0, height - region + 1)), int(rng.integers(0, width - region + 1))
    patch = photo[y : y + region, x : x + region]
    return np.asarray(cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA if region > side else cv2.INTER_LINEAR),
                      np.uint8)


def in_scene(face: NDArray[np.uint8], photos: tuple[NDArray[np.uint8], ...], rng: np.random.Generator) -> NDArray[np.uint8]:
    """The face (size x size) in a scene (CANVAS * size square) with the face's pixels at offset
    `scene_offset(size)`: pasted through a random soft ellipse, then resampled, blurred and compressed."""
    size = face.shape[0]
    side, pad = CANVAS * size, scene_offset(size)
    padded = cv2.copyMakeBorder(face, pad, side - size - pad, pad, side - size - pad, cv2.BORDER_REPLICATE)
    offset = rng.uniform(-ELLIPSE_OFFSET, ELLIPSE_OFFSET, 2) * size
    centre = (pad + (size - 1) / 2 + offset[0], pad + (size - 1) / 2 + offset[1])
    axes = (rng.uniform(*ELLIPSE_AXES[0]) * size, rng.uniform(*ELLIPSE_AXES[1]) * size)
    mask = soft_ellipse(side, centre, axes, rng.uniform(*FEATHER) * size, gaussian=bool(rng.random() < GAUSSIAN_EDGE_P))
    scene = mask * padded + (1 - mask) * photo_patch(photos, side, rng)
    return degraded(np.clip(scene, 0, 255).astype(np.uint8), rng)


def scene_offset(size: int) -> int:
    """Where the face's top-left pixel lies in its scene."""
    return (CANVAS - 1) * size // 2


def degraded(image: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.uint8]:
    """As video shows it: resampled from a lower resolution, blurred, JPEG-compressed (random amounts)."""
    side = image.shape[0]
    low, sigma, quality = rng.uniform(*RESOLUTION), rng.uniform(*BLUR_SIGMA), int(rng.integers(*JPEG_QUALITY))
    out: np.ndarray = image
    losses = rng.random(3) < DEGRADE_P
    if losses[0]:
        small = max(8, round(side * low))
        out = cv2.resize(cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA), (side, side),
                         interpolation=cv2.INTER_LINEAR)
    if losses[1]:
        out = cv2.GaussianBlur(out, (0, 0), sigma)  # the face is 48 px in its scene: sigma in 48-px units
    if losses[2]:
        ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE) if ok else None
        out = out if decoded is None else decoded
    return np.asarray(out, np.uint8)
