"""One live source captured into its output folder: rows while it runs, a published result when it ends.

While the capture runs, `<out>/<name>/live/` receives Parquet parts (outputs/parts.py) and everything else is
staged as for a file (batch.py). When the capture ends (the source ended or stalled, `--duration` passed,
or the first Ctrl-C or SIGTERM stopped it) the result is published exactly as a finished file's is, with
the parts inside it. If it fails or is aborted (a second Ctrl-C), nothing of it is left.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from emotiontrack.batch import Outcome, analyze_into, guarded, staged
from emotiontrack.config import AnalyzeConfig
from emotiontrack.media.live import LiveReader
from emotiontrack.outputs.parts import LiveParts
from emotiontrack.pipeline import Models
from emotiontrack.types import VideoInfo

LIVE = "live"  # the folder of Parquet parts inside a live source's output folder


def analyze_live(reader: LiveReader, out_dir: Path, config: AnalyzeConfig, models: Models,
                 on_start: Callable[[VideoInfo], None] | None = None,
                 on_frames: Callable[[int], None] | None = None) -> Outcome:
    """Capture `reader`'s source until it ends, then publish the result into `out_dir` (which must not hold
    another result). Any error fails the capture alone (`batch.guarded`)."""
    started = time.monotonic()

    def work() -> Outcome:
        info = reader.info()  # waits for the first video
        if on_start:
            on_start(info)
        parts = LiveParts(out_dir / LIVE, info.source, reader.options.flush_s,
                          lambda: {"source": reader.url, "started_at": reader.facts()["started_at"]})
        with staged(out_dir, None) as staging:
            result = analyze_into(staging, out_dir, info, config, models, on_frames, info.source,
                                  {"source": reader.url, "started_at": reader.facts()["started_at"]},
                                  live=reader, sinks=[parts])
            os.replace(out_dir / LIVE, staging / LIVE)  # the parts go with the published result
        last_s = result.faces[-1].time_s if result.faces else 0.0
        return Outcome(out_dir, out_dir, faces=result.face_count, video_s=last_s if math.isfinite(last_s) else 0.0,
                       frames_analysed=result.frames_analysed, wall_s=time.monotonic() - started,
                       stage_s=dict(result.times), source=reader.url)

    try:
        outcome = guarded(out_dir, out_dir, started, work, reader.url)
    except BaseException:  # aborted: nothing of the capture stays
        remove_capture(out_dir)
        raise
    if not outcome.ok:
        remove_capture(out_dir)
    return outcome


def remove_capture(out_dir: Path) -> None:
    """Remove the parts of a capture that was not published, and its folder if nothing else is in it."""
    shutil.rmtree(out_dir / LIVE, ignore_errors=True)
    try:
        out_dir.rmdir()
    except OSError:  # a published result, or somebody else's files
        pass
