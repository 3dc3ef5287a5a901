"""What runs inside the cluster: the analysis actor and the run's control actor.

`AnalysisWorker` loads the detector and the emotion model once, in its own process, from the config (nothing
heavy travels from the driver), and analyses whole inputs with the same `analyze_input` as the local engine:
outputs are written into a staging folder and published by rename, so a worker that dies mid-input leaves
nothing under a final name, and the call is retried on the restarted actor.

`RunControl` is the one small piece of shared state of a run: each worker reports its frames to it a few times
a second (the driver polls it to draw progress), and its answer says whether the run was cancelled (Ctrl-C
or SIGTERM on the driver), so a worker stops at its next frame and removes its staging folder.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import ray

from emotiontrack.batch import Outcome, analyze_input
from emotiontrack.config import AnalyzeConfig
from emotiontrack.errors import Cancelled
from emotiontrack.media.probe import probe
from emotiontrack.pipeline import analyze_video, load_models
from emotiontrack.runtime import loading
from emotiontrack.s3 import S3Prefix
from emotiontrack.types import VideoInfo, VideoResult

REPORT_EVERY_S = 0.3


class RunControl:
    """Progress of every input in flight, and the run's cancel flag."""

    def __init__(self) -> None:
        self.totals: dict[str, int | None] = {}
        self.done: dict[str, int] = {}
        self.cancelled = False

    def start(self, key: str, total: int | None) -> bool:
        self.totals[key], self.done[key] = total, 0  # a retried input starts again from 0
        return self.cancelled

    def report(self, key: str, frames: int) -> bool:
        self.done[key] = self.done.get(key, 0) + frames
        return self.cancelled

    def cancel(self) -> None:
        self.cancelled = True

    def snapshot(self) -> tuple[dict[str, int | None], dict[str, int]]:
        return dict(self.totals), dict(self.done)


class _Reporter:
    """Frames counted locally and sent to the control actor every REPORT_EVERY_S."""

    def __init__(self, control, key: str) -> None:
        self.control, self.key = control, key
        self.pending, self.sent_at = 0, time.monotonic()

    def start(self, info: VideoInfo, total: int | None = None) -> None:
        self._check(self.control.start.remote(self.key, total or info.n_frames))

    def frames(self, n: int) -> None:
        self.pending += n
        if time.monotonic() - self.sent_at >= REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.sent_at = time.monotonic()
        frames, self.pending = self.pending, 0
        self._check(self.control.report.remote(self.key, frames))

    def finish(self) -> None:
        """The last frames, once the input is published (too late to cancel it)."""
        self.control.report.remote(self.key, self.pending)

    @staticmethod
    def _check(answer) -> None:
        if ray.get(answer):
            raise Cancelled()


class AnalysisWorker:
    """One worker slot: models loaded once, then whole inputs, one at a time."""

    def __init__(self, config: AnalyzeConfig, control_name: str) -> None:
        self.config, self.control = config, ray.get_actor(control_name)
        with loading():  # the actor's process is ours: the console script's start-up policy (runtime.py)
            self.models = load_models(config)

    def ready(self) -> str:
        """The emotion model's SHA-256, once the models are loaded."""
        return self.models.classifier.model_sha256

    def analyze(self, key: str, path: Path, out_dir: Path, overwrite: bool, remote: S3Prefix | None,
                source: str | None) -> Outcome | None:
        """`analyze_input` on this worker; None if the run was cancelled meanwhile."""
        reporter = _Reporter(self.control, key)
        try:
            outcome = analyze_input(path, out_dir, self.config, self.models, on_start=reporter.start,
                                    on_frames=reporter.frames, overwrite=overwrite, remote=remote,
                                    source=source)
        except Cancelled:
            return None
        reporter.finish()
        return outcome

    def analyze_segment(self, key: str, path: Path, window: tuple[float, float]) -> VideoResult | None:
        """The faces of one time segment of a video (cluster/segments.py); None if the run was cancelled.
        An EmotionTrackError (a bad input) reaches the driver as the call's error."""
        reporter = _Reporter(self.control, key)
        try:
            info = probe(path)
            end = min(window[1], info.duration_s) if math.isfinite(info.duration_s) else window[1]
            reporter.start(info, round((end - window[0]) * float(info.fps)) if math.isfinite(end) else None)
            result = analyze_video(info, self.config, self.models, reporter.frames, window=window)
        except Cancelled:
            return None
        reporter.finish()
        return result
