"""Synthetic test clips: face pictures moving over a background, with known truth.

Used by the demo, the tests and the benchmarks, so that every clip is built in code (no media files
are shipped). A `Sprite` is a picture with a path over time; `write_clip` encodes the frames with
ffmpeg (H.264, optional sine-tone audio) and returns, per frame, where each sprite was.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from emotiontrack.media.tools import ffmpeg_path, pipe


@dataclass(frozen=True)
class Sprite:
    """A picture whose top-left corner is at `position(t)` (pixels), or hidden where it returns None.

    `picture(t)` may return a different image over time (a face changing expression).
    """

    picture: Callable[[float], NDArray[np.uint8]]
    position: Callable[[float], tuple[float, float] | None]
    name: str = ""


def linear_path(start: tuple[float, float], end: tuple[float, float], duration_s: float,
                hidden: Sequence[tuple[float, float]] = (), appears_s: float = 0.0):
    """Straight-line motion from start to end over duration_s; hidden during the given (from, to) spans."""

    def position(t: float) -> tuple[float, float] | None:
        if t < appears_s or any(a <= t < b for a, b in hidden):
            return None
        u = min(max(t / duration_s, 0.0), 1.0)
        return start[0] + (end[0] - start[0]) * u, start[1] + (end[1] - start[1]) * u

    return position


def render(size: tuple[int, int], sprites: Sequence[Sprite], t: float, background: int = 70) -> tuple[NDArray[np.uint8], list]:
    """One RGB frame (height, width, 3) and the boxes [(name, x1, y1, x2, y2)] of the visible sprites."""
    width, height = size
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = np.linspace(background - 20, background + 20, width, dtype=np.float32).astype(np.uint8)[None, :, None]
    boxes = []
    for sprite in sprites:
        where = sprite.position(t)
        if where is None:
            continue
        image = sprite.picture(t)
        x, y = int(round(where[0])), int(round(where[1]))
        h, w = image.shape[:2]
        x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x2 <= x1 or y2 <= y1:
            continue
        frame[y1:y2, x1:x2] = image[y1 - y : y2 - y, x1 - x : x2 - x]
        boxes.append((sprite.name, x1, y1, x2, y2))
    return frame, boxes


def write_clip(path: Path, sprites: Sequence[Sprite], size: tuple[int, int] = (1280, 720), fps: Fraction | int = 25,
               duration_s: float = 4.0, audio: bool = False, codec: Sequence[str] = ("-c:v", "libx264", "-preset", "ultrafast"),
               background: int = 70) -> list[list]:
    """Encode the clip; returns the visible boxes for every frame."""
    fps = Fraction(fps)
    n_frames = int(round(duration_s * fps))
    args = [ffmpeg_path(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}",
            "-r", str(fps), "-i", "-"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={duration_s}", "-c:a", "aac", "-shortest"]
    args += [*codec, "-pix_fmt", "yuv420p", str(path)]
    truth = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(args, stdin=subprocess.PIPE) as proc:
        stdin = pipe(proc.stdin)
        for i in range(n_frames):
            frame, boxes = render(size, sprites, float(i / fps), background)
            stdin.write(frame.tobytes())
            truth.append(boxes)
        stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed to write {path}")
    return truth


def astronaut_face(size: int = 240, mirrored: bool = False) -> NDArray[np.uint8]:
    """The face of scikit-image's astronaut photograph in a square of `size` pixels (the face fills ~55%)."""
    import cv2
    from skimage import data

    image = data.astronaut()[15:195, 125:305]  # 180x180 around the face
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image[:, ::-1]) if mirrored else image


def fer_faces(split, size: int, rng: np.random.Generator, label: int | None = None) -> tuple[NDArray[np.uint8], int, int]:
    """One random FER2013 face from a dataset `Split`, upscaled to `size` pixels, as RGB; its label and index."""
    import cv2

    picks = np.flatnonzero(split.labels == label) if label is not None else np.arange(len(split))
    index = int(rng.choice(picks))
    face = cv2.resize(split.images[index], (size, size), interpolation=cv2.INTER_CUBIC)
    return np.repeat(face[..., None], 3, axis=2), int(split.labels[index]), index


@dataclass(frozen=True)
class Slot:
    """A face slot of a FER composite clip: where it moves, when it is hidden, its faces over time."""

    name: str
    size: int
    path: Callable[[float], tuple[float, float] | None]
    faces: Sequence[tuple[NDArray[np.uint8], int, int]]  # one (picture, label, index in the split) per period


def _picture_at(slot: Slot, change_s: float) -> Callable[[float], NDArray[np.uint8]]:
    return lambda t: slot.faces[min(int(t // change_s), len(slot.faces) - 1)][0]


def fer_composite(split, duration_s: float = 20.0, change_s: float = 3.0, seed: int = 0,
                  size: tuple[int, int] = (1280, 720)) -> tuple[list[Sprite], list[Slot]]:
    """Four moving slots of FER2013 faces (changing every `change_s`), one hidden for a second, one entering late."""
    rng = np.random.default_rng(seed)
    width, height = size
    periods = int(np.ceil(duration_s / change_s))
    # Each slot moves inside its own quadrant, so slots never cover each other.
    plans = [
        ("a", 200, linear_path((40, 40), (400, 120), duration_s)),
        ("b", 180, linear_path((width - 240, 60), (width - 600, 150), duration_s, hidden=[(duration_s * 0.4, duration_s * 0.4 + 1.0)])),
        ("c", 220, linear_path((80, height - 270), (380, height - 290), duration_s)),
        ("d", 190, linear_path((width - 250, height - 250), (width - 600, height - 230), duration_s, appears_s=duration_s * 0.3)),
    ]
    slots, sprites = [], []
    for name, side, path in plans:
        faces = [fer_faces(split, side, rng) for _ in range(periods)]
        slot = Slot(name, side, path, faces)
        slots.append(slot)
        sprites.append(Sprite(_picture_at(slot, change_s), path, name))
    return sprites, slots
