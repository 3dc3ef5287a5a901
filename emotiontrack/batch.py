"""Many inputs into one output folder: one subfolder per input, failures isolated per input.

`<out>/<input stem>/timeline.parquet` for each input; inputs whose stems collide get a short hash of
their absolute path appended, so names are stable from one run to the next.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emotiontrack.config import AnalyzeConfig
from emotiontrack.decode import probe
from emotiontrack.errors import EmotionTrackError, OutputError
from emotiontrack.pipeline import Models, analyze_video, timeline_table
from emotiontrack.types import VideoInfo
from emotiontrack.write import write_parquet

log = logging.getLogger(__name__)

TIMELINE = "timeline.parquet"


@dataclass(frozen=True)
class Outcome:
    """What happened to one input."""

    path: Path
    out_dir: Path
    error: str | None = None
    faces: int = 0
    video_s: float = 0.0
    analysed_frames: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def output_dirs(paths: Sequence[Path], out: Path) -> dict[Path, Path]:
    """A distinct output folder per input, named after its stem."""
    stems = Counter(_stem(p) for p in paths)
    dirs = {}
    for path in paths:
        name = _stem(path)
        if stems[name] > 1:
            name += "-" + hashlib.sha1(str(path.absolute()).encode()).hexdigest()[:8]
        dirs[path] = out / name
    return dirs


def _stem(path: Path) -> str:
    return (path.resolve().name if path.name in ("", ".", "..") else path.stem) or "input"


def check_output_dir(out: Path) -> None:
    """Fail at once if the output folder cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / f".emotiontrack-write-test-{time.monotonic_ns()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None


def analyze_input(
    path: Path,
    out_dir: Path,
    config: AnalyzeConfig,
    models: Models,
    on_start: Callable[[VideoInfo], None] | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> Outcome:
    """Analyse one input and write its outputs; an EmotionTrackError becomes a failed Outcome."""
    started = time.monotonic()
    try:
        info = probe(path)
        if on_start:
            on_start(info)
        result = analyze_video(info, config, models, on_frames)
        write_parquet(timeline_table(result, config, models, str(path)), out_dir / TIMELINE)
    except EmotionTrackError as exc:
        return Outcome(path, out_dir, error=str(exc), wall_s=time.monotonic() - started)
    except OSError as exc:  # disk full, folder removed mid-run...
        return Outcome(path, out_dir, error=f"{path}: cannot write results ({exc.strerror or exc})",
                       wall_s=time.monotonic() - started)
    video_s = info.duration_s if math.isfinite(info.duration_s) else 0.0
    return Outcome(path, out_dir, faces=result.face_ids, video_s=video_s,
                   analysed_frames=result.analysed_frames, wall_s=time.monotonic() - started)
