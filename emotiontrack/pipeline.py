"""Wiring: decode -> sample -> detect -> track -> classify, for one input at a time.

The only module that imports every stage. Models are loaded once (`load_models`) and passed in;
`analyze_video` keeps no state between inputs (a new tracker per video).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa

from emotiontrack import __version__
from emotiontrack.classify import EmotionClassifier
from emotiontrack.config import AnalyzeConfig, resolve_device
from emotiontrack.decode import FrameSampler, VideoReader, image_frames, probe
from emotiontrack.detect import FaceDetector
from emotiontrack.track import FaceTracker, iou_matrix
from emotiontrack.types import Faces, Frame, VideoInfo
from emotiontrack.summary import add_smoothed
from emotiontrack.write import to_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Models:
    detector: FaceDetector
    classifier: EmotionClassifier


def load_models(config: AnalyzeConfig) -> Models:
    device = resolve_device(config.device)
    return Models(
        FaceDetector(config.min_face, config.min_score, device),
        EmotionClassifier.load(config.model, config.margin, device),
    )


class StageTimes(dict):
    """Wall seconds spent per pipeline stage (decode counts only the time spent waiting for frames)."""

    @contextmanager
    def measure(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - started


@dataclass
class VideoResult:
    info: VideoInfo
    faces: list[Faces] = field(default_factory=list)  # one entry per analysed frame, in order
    frames_decoded: int = 0
    decode_errors: int = 0
    wall_s: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def analysed_frames(self) -> int:
        return len(self.faces)

    @property
    def face_ids(self) -> int:
        return len({int(i) for f in self.faces for i in f.track_id})

    def metadata(self, config: AnalyzeConfig, model_sha256: str) -> dict[str, object]:
        info = self.info
        return {
            "emotiontrack_version": __version__,
            "model_sha256": model_sha256,
            "source": str(info.path),
            "source_fps": str(info.fps),
            "source_fps_float": float(info.fps),
            "duration_s": info.duration_s if math.isfinite(info.duration_s) else None,
            "width": info.width,
            "height": info.height,
            "rotation": info.rotation,
            "decoded_frames": self.frames_decoded,
            "analysed_frames": self.analysed_frames,
            "decode_errors": self.decode_errors,
            "settings": config.settings(),
        }


def _frames(info: VideoInfo, stack: ExitStack) -> Iterator[Frame] | VideoReader:
    if info.is_stills:
        return image_frames(info)
    return stack.enter_context(VideoReader(info))


class FrameSink(Protocol):
    """Receives every frame in order, with its faces if it was analysed (None otherwise)."""

    wants_all_frames: bool

    def push(self, frame: Frame, faces: Faces | None) -> None: ...


def analyze_video(
    info: VideoInfo,
    config: AnalyzeConfig,
    models: Models,
    on_frames: Callable[[int], None] | None = None,
    sinks: Sequence[FrameSink] = (),
    chunk: int | None = None,
) -> VideoResult:
    """Analyse one input. `on_frames(n)` is called as decoded frames are consumed (for progress);
    `sinks` see every frame (or only analysed ones) with its faces, in order."""
    started = time.monotonic()
    # Analysed frames go through detection and classification in chunks: the CNN is ~20% cheaper per crop
    # in batches of 16 than 4 on a CPU, and a GPU gains far more.
    chunk = chunk or (4 if models.detector.device.type == "cpu" else 16)
    keep_all = any(sink.wants_all_frames for sink in sinks)
    result = VideoResult(info)
    tracker = FaceTracker(config.max_gap_s)
    sampler = FrameSampler(config.fps)
    queue: list[tuple[Frame, bool]] = []  # frames waiting for the analysis of the chunk they belong to
    times = result.times

    def flush() -> None:
        analysed = _analyse([f for f, take in queue if take], models, tracker, times)
        result.faces.extend(analysed)
        results = iter(analysed)
        with times.measure("annotate"):
            for frame, take in queue:
                faces = next(results) if take else None
                for sink in sinks:
                    if take or sink.wants_all_frames:
                        sink.push(frame, faces)
        queue.clear()

    with ExitStack() as stack:
        frames = _frames(info, stack)
        for frame in _timed(frames, times):
            result.frames_decoded += 1
            take = sampler.take(frame.time_s)
            if take or keep_all:
                queue.append((frame, take))
            if take and sum(t for _, t in queue) >= chunk:
                flush()
            if on_frames:
                on_frames(1)
        flush()
        result.decode_errors = getattr(frames, "decode_errors", 0)
    result.wall_s = time.monotonic() - started
    return result


def _timed(frames, times: StageTimes) -> Iterator[Frame]:
    iterator = iter(frames)
    while True:
        with times.measure("decode"):
            frame = next(iterator, None)
        if frame is None:
            return
        yield frame


def _analyse(frames: list[Frame], models: Models, tracker: FaceTracker, times: StageTimes) -> list[Faces]:
    if not frames:
        return []
    with times.measure("detect"):
        detected = models.detector.detect(frames)
    tracked = []
    for frame, faces in zip(frames, detected):
        with times.measure("detect"):
            faces = _look_again(frame, faces, models.detector, tracker)
        with times.measure("track"):
            tracked.append(tracker.update(faces))
    with times.measure("classify"):
        return models.classifier.classify([frame.rgb for frame in frames], tracked)


def _look_again(frame: Frame, faces: Faces, detector: FaceDetector, tracker: FaceTracker) -> Faces:
    """Add the faces found by a second, closer look where tracked faces are expected but were not detected."""
    expected = tracker.expected(frame.time_s)
    if len(expected) and len(faces):
        expected = expected[iou_matrix(expected, faces.xyxy).max(axis=1) < 0.3]
    if not len(expected):
        return faces
    found = detector.detect_around(frame, expected)
    if len(found) and len(faces):
        found = found[iou_matrix(found.xyxy, faces.xyxy).max(axis=1) < 0.3]
    return Faces.merge([faces, found]) if len(found) else faces


def timeline_table(result: VideoResult, config: AnalyzeConfig, models: Models, video: str | None = None) -> pa.Table:
    """The timeline with its metadata and the smoothed columns."""
    table = to_table(video or str(result.info.path), result.faces, result.metadata(config, models.classifier.model_sha256))
    return add_smoothed(table, config.smooth_s)


def analyze(path: str | Path, models: Models | None = None, **settings) -> pd.DataFrame:
    """Analyse one video or image folder; return its timeline as a DataFrame (same code as the CLI).

    `settings` are AnalyzeConfig fields (fps, min_face, min_score, max_gap_s, margin, smooth_s, device, model).
    The run's metadata is in `df.attrs["emotiontrack"]`.
    """
    config = AnalyzeConfig(**settings)
    models = models or load_models(config)
    result = analyze_video(probe(Path(path)), config, models)
    table = timeline_table(result, config, models, str(path))
    frame = table.to_pandas()
    frame.attrs["emotiontrack"] = result.metadata(config, models.classifier.model_sha256)
    return frame
