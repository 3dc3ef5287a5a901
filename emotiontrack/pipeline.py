"""Wiring: decode -> sample -> detect -> track -> classify, for one input at a time.

The only module that imports every stage. Models are loaded once (`load_models`) and passed in;
`analyze_video` keeps no state between inputs (a new tracker per video).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
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
        EmotionClassifier.load(config.model, config.margin, device, config.crop),
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


def _frames(info: VideoInfo, stack: ExitStack, sample_fps: float | None) -> Iterator[Frame] | VideoReader:
    if info.is_stills:
        return image_frames(info)  # every still is analysed
    return stack.enter_context(VideoReader(info, sample_fps))


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
    `sinks` see every frame (or only analysed ones) with its faces, in order, from a worker thread."""
    started = time.monotonic()
    keep_all = any(sink.wants_all_frames for sink in sinks)
    # Analysed frames go through detection and classification in chunks, the CNN on one chunk beside the
    # detection of the next. On a CPU, chunks of 8 (32 crops, mirrored in the same batch) were ~0.4 s faster
    # for a minute of 720p than 16 (less waiting for the first chunk's faces and the last one's emotions),
    # and 4 when every frame waits in memory with its chunk (for the annotated video); a GPU wants batches.
    on_cpu = models.detector.device.type == "cpu"
    chunk = chunk or ((4 if keep_all else 8) if on_cpu else 16)
    result = VideoResult(info)
    finder = _FaceFinder(models.detector, FaceTracker(config.max_gap_s), config.detect_every_s)
    sampler = FrameSampler(config.fps)
    queue: list[tuple[Frame, bool]] = []  # frames waiting for the analysis of the chunk they belong to
    times = result.times

    def flush() -> None:
        if queue:
            tracked = finder.find([f for f, take in queue if take], times)
            classifying.submit(list(queue), tracked)
            queue.clear()

    with ExitStack() as stack:
        # When no sink wants every frame, ffmpeg drops the frames that are not analysed: --no-video then
        # handles 1 frame in 12 at 25 fps.
        frames = _frames(info, stack, None if keep_all else config.fps)
        classifying = stack.enter_context(_Classifying(models.classifier, sinks, result))
        done = 0  # source frames (or stills) passed, for progress
        for frame in _timed(frames, times):
            take = sampler.take(frame.time_s) if keep_all else True
            queue.append((frame, take))
            result.frames_decoded += 1
            if take and sum(t for _, t in queue) >= chunk:
                flush()
            if on_frames:
                on_frames(frame.index + 1 - done)
            done = frame.index + 1
        flush()
        classifying.wait()
        if isinstance(frames, VideoReader):  # it also counts the frames it dropped
            result.frames_decoded = frames.frames_read
            if on_frames:
                on_frames(frames.frames_read - done)
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


class _Classifying:
    """Classifies a chunk's faces, then hands its frames to the sinks, on a worker thread: the CNN runs
    beside the detection of the next chunk (torch releases the GIL). At most one chunk is in its hands,
    so frames held stay bounded; its errors are raised in the caller's thread by the next call."""

    def __init__(self, classifier: EmotionClassifier, sinks: Sequence[FrameSink], result: VideoResult):
        self.classifier, self.sinks, self.result = classifier, sinks, result
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="classify")
        self._running: Future | None = None

    def submit(self, chunk: list[tuple[Frame, bool]], tracked: list[Faces]) -> None:
        self.wait()
        self._running = self._pool.submit(self._run, chunk, tracked)

    def wait(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.result()

    def _run(self, chunk: list[tuple[Frame, bool]], tracked: list[Faces]) -> None:
        times = self.result.times
        with times.measure("classify"):
            analysed = self.classifier.classify([frame.rgb for frame, take in chunk if take], tracked)
        self.result.faces.extend(analysed)
        results = iter(analysed)
        with times.measure("annotate"):
            for frame, take in chunk:
                faces = next(results) if take else None
                for sink in self.sinks:
                    if take or sink.wants_all_frames:
                        sink.push(frame, faces)

    def __enter__(self) -> _Classifying:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _FaceFinder:
    """Finds and tracks the faces of analysed frames, in order.

    MTCNN looks at the whole frame at least every `every_s` seconds (to find new faces), and whenever no
    face is being followed; in between, its last stage alone confirms and refines the faces where the
    tracker expects them (~10x cheaper). When that misses an expected face (hidden, turned away, gone),
    the same frame gets a whole-frame look, so a face that reappears elsewhere is found as soon as with a
    whole-frame look at every frame, while its track still accepts it. A whole-frame look also looks
    again, closer, around expected faces it missed.
    """

    def __init__(self, detector: FaceDetector, tracker: FaceTracker, every_s: float):
        self.detector, self.tracker, self.every_s = detector, tracker, every_s
        self._last_full_s = -math.inf

    def find(self, frames: Sequence[Frame], times: StageTimes) -> list[Faces]:
        due = [self._full_look_due(frame.time_s) for frame in frames]
        with times.measure("detect"):
            full = iter(self.detector.detect([f for f, d in zip(frames, due) if d]))  # batched: pays on a GPU
        tracked = []
        for frame, is_due in zip(frames, due):
            with times.measure("detect"):
                faces = self._look(frame, next(full) if is_due else None)
            with times.measure("track"):
                tracked.append(self.tracker.update(faces))
        return tracked

    def _look(self, frame: Frame, full_look: Faces | None) -> Faces:
        expected = self.tracker.expected(frame.time_s)
        if full_look is None and len(expected):
            followed = self.detector.follow(frame, expected)
            if len(followed) == len(expected):  # every expected face is where it should be
                return followed
        if full_look is None:  # nobody to follow, or somebody lost: look at the whole frame
            self._last_full_s = frame.time_s
            full_look = self.detector.detect([frame])[0]
        return _look_again(frame, full_look, expected, self.detector)

    def _full_look_due(self, time_s: float) -> bool:
        if not math.isfinite(time_s) or time_s - self._last_full_s >= self.every_s - 1e-6:
            self._last_full_s = time_s
            return True
        return False


def _look_again(frame: Frame, faces: Faces, expected: np.ndarray, detector: FaceDetector) -> Faces:
    """Add the faces found by a second, closer look where tracked faces are expected but were not detected."""
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
