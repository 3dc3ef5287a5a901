"""Records passed between pipeline stages: small, frozen, column-oriented.

decode -> Frame;  detect -> Faces (track_id = -1, probs = NaN);  track -> Faces (track_id set);
classify -> Faces (probs set).  Each stage returns a new record (`dataclasses.replace`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import Field, dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def path_text(path: Path | str) -> str:
    """A path as text for outputs (tables, reports, folder names): a name that is not UTF-8 (Latin-1 bytes on
    Linux) shows its odd bytes as escapes (\\xe9) instead of breaking UTF-8 writers."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
INPUT_SIZE = 48  # side of the grayscale face crops the emotion model takes (FER2013's images)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What ffprobe says about an input (or what an image folder holds)."""

    path: Path
    width: int  # as displayed: rotation already applied
    height: int
    fps: Fraction  # average frame rate, e.g. 30000/1001; Fraction(0) for image folders
    duration_s: float  # NaN where unknown (image folders)
    n_frames: int | None  # container estimate; may be wrong or missing
    rotation: int = 0  # degrees the decoder rotates frames to display them
    audio_codec: str | None = None  # first audio stream's codec, None without audio
    audio_channels: int = 0  # that stream's channels
    is_stills: bool = False  # an image folder or a single image: stills, analysed one by one
    stream: int = 0  # index (among all the file's streams) of the video stream analysed: the one a player shows
    autorotate: bool = True  # False where the display matrix is no multiple of 90 degrees: frames as stored
    base_fps: Fraction = Fraction(0)  # the rate frames are shown at between gaps (0: the average rate)
    # Width of a stored pixel over its height: players stretch anamorphic video (DV, some broadcast) by it.
    # Frames, boxes and the annotated video stay in stored pixels; the video carries the same ratio.
    sample_aspect: Fraction = Fraction(1)
    url: str | None = None  # a live source's address (udp://..., /dev/video0); `path` is then its output name

    @property
    def is_live(self) -> bool:
        return self.url is not None

    @property
    def source(self) -> str:
        """The input as the user named it, for messages and outputs."""
        return self.url or path_text(self.path)

    @property
    def output_fps(self) -> Fraction:
        """The constant rate of the annotated video."""
        return self.base_fps or self.fps


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: its index in the source stream, its presentation time, its pixels.

    `rgb` is (H, W, 3) RGB. A video frame may hold its pixels as the decoder gave them, I420 planes
    (H * 3 / 2, W); `rgb` then converts them on first use (and keeps the result). Most frames of an
    annotated video are only drawn on, which works on the planes: they never pay for two conversions.
    """

    index: int
    time_s: float
    pixels: NDArray[np.uint8] = field(repr=False)  # (H, W, 3) RGB, or (H * 3 / 2, W) I420 when is_i420
    name: str | None = None  # file name, for frames that come from an image folder
    is_i420: bool = False
    arrived_s: float = float("nan")  # time.monotonic() when a live source delivered it (NaN for files)
    shot: int = 0  # shot cuts before it in the source (media/decode.py): faces are never followed across one
    _rgb: list = field(default_factory=list, init=False, repr=False, compare=False)  # the converted pixels, once needed

    @property
    def rgb(self) -> NDArray[np.uint8]:
        if not self.is_i420:
            return self.pixels
        if not self._rgb:
            import cv2

            self._rgb.append(cv2.cvtColor(self.pixels, cv2.COLOR_YUV2RGB_I420))
        return self._rgb[0]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        height, width = self.pixels.shape[:2]
        return (width, height * 2 // 3) if self.is_i420 else (width, height)


def per_face(shape: tuple[int, ...], dtype: type, fill: object) -> Any:
    """A `Faces` field holding one row per face: each row's `shape`, its `dtype`, and the `fill` of a face
    a stage has not measured yet. Validation, selection, merging and new records read these from the
    field list, so a new per-face field is one line."""
    return field(metadata={"shape": shape, "dtype": dtype, "fill": fill})


@dataclass(frozen=True, slots=True)
class Faces:
    """The faces in one frame, as parallel arrays; len() is the number of faces.

    xyxy (n, 4) float32 pixels of the source frame, clipped to it; score (n,) float32 detector
    probability; landmarks (n, 5, 2) float32 eyes, nose, mouth corners; track_id (n,) int64, -1 before
    tracking; probs (n, len(EMOTIONS)) float32 in EMOTIONS order, NaN before classification; aligned (n,)
    bool, whether the classified crop was aligned on the landmarks (False: the box's square, or unclassified);
    align_error (n,) float32, the residual of that alignment in 48-px units (NaN for box crops).
    """

    frame_index: int
    time_s: float
    xyxy: NDArray[np.float32] = per_face((4,), np.float32, np.nan)
    score: NDArray[np.float32] = per_face((), np.float32, np.nan)
    landmarks: NDArray[np.float32] = per_face((5, 2), np.float32, np.nan)
    track_id: NDArray[np.int64] = per_face((), np.int64, -1)
    probs: NDArray[np.float32] = per_face((len(EMOTIONS),), np.float32, np.nan)
    aligned: NDArray[np.bool_] = per_face((), np.bool_, False)
    align_error: NDArray[np.float32] = per_face((), np.float32, np.nan)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        for f in per_face_fields():
            array, shape = getattr(self, f.name), (n, *f.metadata["shape"])
            if array.shape != shape:
                raise ValueError(f"Faces.{f.name} must have shape {shape}, got {array.shape}")

    @classmethod
    def from_boxes(cls, frame_index: int, time_s: float, xyxy: NDArray, score: NDArray,
                   landmarks: NDArray | None = None) -> Faces:
        """New, untracked and unclassified faces (every other per-face field at its fill)."""
        n = len(xyxy)
        given = {"xyxy": xyxy, "score": score, "landmarks": landmarks}
        arrays: dict[str, Any] = {}
        for f in per_face_fields():
            shape, dtype = (n, *f.metadata["shape"]), f.metadata["dtype"]
            value = given.get(f.name)
            arrays[f.name] = (np.full(shape, f.metadata["fill"], dtype) if value is None
                              else np.asarray(value, dtype).reshape(shape))
        return cls(frame_index=frame_index, time_s=time_s, **arrays)

    @classmethod
    def empty(cls, frame_index: int = -1, time_s: float = float("nan")) -> Faces:
        return cls.from_boxes(frame_index, time_s, np.empty((0, 4)), np.empty(0))

    @classmethod
    def merge(cls, parts: list[Faces]) -> Faces:
        """Concatenate records of the same frame (the first one's frame index and time are kept)."""
        joined: dict[str, Any] = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in per_face_fields()}
        return replace(parts[0], **joined)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: NDArray[np.bool_] | NDArray[np.integer] | list[int] | slice | int) -> Faces:
        """Select faces by boolean mask, integer indices or slice: `faces[faces.score > 0.9]`."""
        if isinstance(index, int):
            index = [index]
        selected: dict[str, Any] = {f.name: getattr(self, f.name)[index] for f in per_face_fields()}
        return replace(self, **selected)

    @property
    def width(self) -> NDArray[np.float32]:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def height(self) -> NDArray[np.float32]:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    @property
    def center(self) -> NDArray[np.float32]:
        return ((self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2).astype(np.float32)


@functools.cache
def per_face_fields() -> tuple[Field, ...]:
    """The fields of `Faces` with one row per face, in declaration order."""
    return tuple(f for f in fields(Faces) if "shape" in f.metadata)


class StageTimes(dict):
    """Wall seconds spent per pipeline stage (decode counts only the time spent waiting for frames)."""

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - started


@dataclass
class VideoResult:
    """What the analysis of one input found: the faces of each analysed frame, in order, and run facts."""

    info: VideoInfo
    faces: list[Faces] = field(default_factory=list)  # one entry per analysed frame, in order
    frames_decoded: int = 0
    decode_errors: int = 0
    wall_s: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)
    live: dict[str, object] | None = None  # a live capture's facts (media/live.py LiveReader.facts)
    latency_s: list[float] = field(default_factory=list)  # live: seconds from a frame's arrival to its emotions
    precision: str = ""  # the CNN's arithmetic as it ran (model/predictor.py): fp32, bf16 or int8
    cuts_s: list[float] = field(default_factory=list)  # shot cuts found in the source (media/decode.py)

    @property
    def frames_analysed(self) -> int:
        return len(self.faces)

    @property
    def face_count(self) -> int:
        """Distinct face ids."""
        return len({int(i) for f in self.faces for i in f.track_id})
