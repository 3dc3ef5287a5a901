"""Wiring: decode -> sample -> detect -> find faces over time -> track -> classify, one input at a time.

Models are loaded once (`load_models`) and passed in; `analyze_video` keeps no state between inputs (a
new tracker per video). Threads of one analysis: ffmpeg decodes in its own process, a reader thread
turns its pipe into frames (media/decode.py, a queue of ~32 MB bounds them); the caller's thread groups
frames into chunks (media/frames.py), detects and tracks their faces (stages/schedule.py); one worker
thread classifies a chunk's faces beside the detection of the next and hands the frames to the sinks
(stages/classify_worker.py, one chunk at a time); the annotated video draws and encodes on a thread of its
own (outputs/video.py, a queue of ~32 MB).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emotiontrack.config import AnalyzeConfig, resolve_device
from emotiontrack.media.frames import FrameSource
from emotiontrack.media.live import LiveReader
from emotiontrack.media.probe import probe
from emotiontrack.outputs.timeline import timeline_metadata, timeline_table
from emotiontrack.runtime import use_threads
from emotiontrack.stages.classify import EmotionClassifier
from emotiontrack.stages.classify_worker import ClassifyWorker, FrameSink
from emotiontrack.stages.detect import MTCNNDetector
from emotiontrack.stages.detector import Detector
from emotiontrack.stages.schedule import FaceFinder
from emotiontrack.stages.track import FaceTracker
from emotiontrack.types import VideoInfo, VideoResult, path_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Models:
    """The loaded models, shared by every input of a run."""

    detector: Detector  # MTCNN (stages/detect.py) unless another is passed in
    classifier: EmotionClassifier


def load_models(config: AnalyzeConfig) -> Models:
    """Load the detector and the emotion model once, on the configured device and CPU threads. (The console
    script wraps this in `runtime.loading()`; a library call leaves the caller's garbage collector alone.)"""
    use_threads(config.threads)
    device = resolve_device(config.device)
    return Models(MTCNNDetector(config.min_face, config.min_score, device),
                  EmotionClassifier.load(config.model, config.margin, device, config.crop, config.precision))


def chunk_size(on_cpu: bool) -> int:
    """Analysed frames per chunk. On a CPU, chunks of 8 (32 crops, mirrored in the same batch) were ~0.4 s
    faster for a minute of 720p than 16 (less waiting for the first chunk's faces and the last one's
    emotions); a GPU wants batches. The same with or without the annotated video: the chunks decide the
    classifier's batches, and an output must not change the analysis."""
    return 8 if on_cpu else 16


def analyze_video(info: VideoInfo, config: AnalyzeConfig, models: Models, on_frames: Callable[[int], None] | None = None,
                  sinks: Sequence[FrameSink] = (), chunk: int | None = None,
                  window: tuple[float, float] | None = None, live: LiveReader | None = None) -> VideoResult:
    """Analyse one input. `on_frames(n)` is called as decoded frames are consumed (for progress); `sinks`
    get every frame (or only analysed ones) with its faces, in order, from the classification worker.
    `window` (start_s, end_s) analyses only that span of a video (a segment, cluster/segments.py). A live
    source's frames come from `live`, each analysed frame on its own, as soon as it arrives."""
    started = time.monotonic()
    keep_all = any(sink.wants_all_frames for sink in sinks)
    chunk = 1 if live else chunk or chunk_size(models.detector.device.type == "cpu")
    result = VideoResult(info, precision=models.classifier.model.precision)
    finder = FaceFinder(models.detector, FaceTracker(config.max_gap_s), config.detect_every_s)
    with FrameSource(info, config.sample_fps, keep_all, window, live) as source, ClassifyWorker(models.classifier, sinks, result) as worker:
        for frames in source.chunks(chunk, result.times, on_frames):
            worker.submit(frames, finder.find([frame for frame, analysed in frames if analysed], result.times))
        worker.wait()
        result.frames_decoded, result.decode_errors, result.cuts_s = source.frames_read, source.decode_errors, source.cuts_s
    if live is not None:
        result.live = live.facts()
    result.wall_s = time.monotonic() - started
    return result


def analyze(path: str | Path, models: Models | None = None, **settings) -> pd.DataFrame:
    """Analyse one video or image folder; return its timeline as a DataFrame (same code as the CLI).

    `settings` are AnalyzeConfig fields (sample_fps, min_face, min_score, detect_every_s, max_gap_s, crop, margin,
    smooth_s, device, model). The run's metadata is in `df.attrs["emotiontrack"]`.
    """
    config = AnalyzeConfig(**settings)
    models = models or load_models(config)
    result = analyze_video(probe(Path(path)), config, models)
    frame = timeline_table(result, config, models.classifier.model_sha256, path_text(path)).to_pandas()
    frame.attrs["emotiontrack"] = timeline_metadata(result, config, models.classifier.model_sha256)
    return frame
