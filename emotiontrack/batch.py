"""Many inputs into one output folder: one subfolder per input, complete or absent.

Each input is analysed into a hidden staging folder beside its final one; only when every file is
written (timeline, per-face summary, crops, charts, report, annotated video, then the manifest) is the
folder renamed into place. A failed or interrupted input therefore leaves nothing under a final name.
The manifest records the source, model and settings, so a re-run skips inputs already done the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from emotiontrack import __version__
from emotiontrack.annotate import AnnotatedVideo, write_annotated_still
from emotiontrack.charts import plot_overview, plot_shares, plot_timelines
from emotiontrack.config import AnalyzeConfig
from emotiontrack.decode import probe
from emotiontrack.errors import EmotionTrackError, OutputError
from emotiontrack.pipeline import Models, VideoResult, analyze_video, timeline_table
from emotiontrack.report import index_page, video_report
from emotiontrack.summary import BestCrops, faces_table
from emotiontrack.types import Faces, Frame, VideoInfo
from emotiontrack.write import default_mode, write_parquet

log = logging.getLogger(__name__)

TIMELINE, FACES, MANIFEST, VIDEO = "timeline.parquet", "faces.parquet", "manifest.json", "annotated.mp4"


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
    skipped: bool = False  # already complete from an earlier run with the same model and settings
    stage_s: dict[str, float] | None = None  # wall seconds per pipeline stage

    @property
    def ok(self) -> bool:
        return self.error is None


def output_dirs(paths: Sequence[Path], out: Path) -> dict[Path, Path]:
    """A distinct output folder per input, named after its stem (plus a path hash where stems collide)."""
    stems = Counter(_stem(p) for p in paths)
    dirs = {}
    for path in paths:
        name = _stem(path)
        if stems[name] > 1:
            name += "-" + hashlib.sha1(str(path.absolute()).encode()).hexdigest()[:8]
        dirs[path] = out / name
    return dirs


def _stem(path: Path) -> str:
    name = path.absolute().name if path.name in ("", ".", "..") else path.stem
    return name.lstrip(".") or "input"


def check_output_dir(out: Path) -> None:
    """Fail at once if the output folder cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".emotiontrack-write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None


def _source_identity(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"source": str(path.absolute()), "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


def _manifest_key(path: Path, config: AnalyzeConfig, model_sha256: str) -> dict[str, object]:
    return {"emotiontrack_version": __version__, "model_sha256": model_sha256, "settings": config.settings(),
            **_source_identity(path)}


def is_complete(path: Path, out_dir: Path, config: AnalyzeConfig, model_sha256: str) -> bool:
    """True if out_dir holds a finished result for this very source, model and settings."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        key = _manifest_key(path, config, model_sha256)
    except (OSError, ValueError):
        return False
    return all(manifest.get(k) == v for k, v in key.items()) and all((out_dir / f).is_file() for f in manifest["files"])


class _AnnotatedStills:
    """Sink writing one annotated JPEG per still of an image folder."""

    wants_all_frames = False

    def __init__(self, folder: Path):
        self.folder = folder

    def push(self, frame: Frame, faces: Faces | None) -> None:
        if faces is not None:
            write_annotated_still(self.folder / f"{Path(frame.name or str(frame.index)).stem}.jpg", frame, faces)


def analyze_input(
    path: Path,
    out_dir: Path,
    config: AnalyzeConfig,
    models: Models,
    on_start: Callable[[VideoInfo], None] | None = None,
    on_frames: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> Outcome:
    """Analyse one input and publish its outputs; an EmotionTrackError becomes a failed Outcome."""
    started = time.monotonic()
    if not overwrite and path.exists() and is_complete(path, out_dir, config, models.classifier.model_sha256):
        faces = pd.read_parquet(out_dir / FACES)
        return Outcome(path, out_dir, faces=len(faces), skipped=True, wall_s=time.monotonic() - started)
    staging: Path | None = None
    try:
        info = probe(path)
        if on_start:
            on_start(info)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
        staging.chmod(default_mode(is_dir=True))
        result = _analyse_into(staging, path, info, config, models, on_frames)
        _publish(staging, out_dir)
    except EmotionTrackError as exc:
        return Outcome(path, out_dir, error=str(exc), wall_s=time.monotonic() - started)
    except OSError as exc:  # disk full, folder removed mid-run...
        return Outcome(path, out_dir, error=f"{path}: cannot write results ({exc.strerror or exc})",
                       wall_s=time.monotonic() - started)
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    video_s = info.duration_s if math.isfinite(info.duration_s) else 0.0
    return Outcome(path, out_dir, faces=result.face_ids, video_s=video_s, analysed_frames=result.analysed_frames,
                   wall_s=time.monotonic() - started, stage_s=dict(result.times))


def _analyse_into(staging: Path, path: Path, info: VideoInfo, config: AnalyzeConfig, models: Models,
                  on_frames: Callable[[int], None] | None) -> VideoResult:
    started = time.monotonic()
    interval = config.sample_interval_s(float(info.fps))
    crops = BestCrops()
    sinks: list = [crops]
    video = None
    if config.video and info.is_stills:
        sinks.append(_AnnotatedStills(staging / "annotated"))
    elif config.video:
        video = AnnotatedVideo(staging / VIDEO, info, config.smooth_s, config.max_gap_s, interval)
        sinks.append(video)
    try:
        result = analyze_video(info, config, models, on_frames, sinks)
        if video is not None:  # its thread encodes the last frames while the other outputs are written
            video.end_input()
        if result.decode_errors:
            log.warning("%s: %d decoder errors (damaged data); analysed the %d frames that decoded (container says %s)",
                        path, result.decode_errors, result.frames_decoded, info.n_frames or "unknown")
        with result.times.measure("write"):
            _write_outputs(staging, path, result, config, models, crops, interval, with_video=video is not None)
        if video is not None:
            with result.times.measure("annotate"):
                video.finish()
    except BaseException:
        if video is not None:
            video.abort()
        raise
    _write_manifest(staging, path, result, config, models, started)
    return result


def _write_outputs(staging: Path, path: Path, result: VideoResult, config: AnalyzeConfig, models: Models,
                   crops: BestCrops, interval: float, with_video: bool) -> None:
    name = str(path)
    table = timeline_table(result, config, models, name)
    write_parquet(table, staging / TIMELINE)
    timeline = table.to_pandas()
    faces = faces_table(timeline, name, interval)
    write_parquet(pa.Table.from_pandas(faces, preserve_index=False), staging / FACES)
    crops.save(staging / "faces")
    title = path.name or str(path)
    charts = [c for c in (plot_timelines(timeline, faces, title, staging / "timeline.png"),
                          plot_shares(faces, title, staging / "shares.png")) if c is not None]
    links = ([VIDEO] if with_video else []) + [f for f in ("annotated/", TIMELINE, FACES) if (staging / f).exists()]
    video_report(staging, name, faces, result.metadata(config, models.classifier.model_sha256), charts, links)


def _write_manifest(staging: Path, path: Path, result: VideoResult, config: AnalyzeConfig, models: Models,
                    started: float) -> None:
    """Written last: its presence says every other file is complete."""
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    manifest = {**_manifest_key(path, config, models.classifier.model_sha256), "files": files,
                "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_s": time.monotonic() - started,
                "stage_seconds": dict(result.times)}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _publish(staging: Path, final: Path) -> None:
    """Move a finished staging folder to its final name, replacing an older result."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_run_summary(out: Path, outcomes: Sequence[Outcome]) -> Path | None:
    """`out/summary.parquet` (all faces of the run's finished inputs), `overview.png` and `index.html`."""
    parts = [pd.read_parquet(o.out_dir / FACES) for o in outcomes if o.ok and (o.out_dir / FACES).is_file()]
    if parts:
        summary = pd.concat(parts, ignore_index=True)
        write_parquet(pa.Table.from_pandas(summary, preserve_index=False), out / "summary.parquet")
        overview = plot_overview(summary, out / "overview.png") if len(parts) > 1 else None
    else:
        overview = None
    entries = [(str(o.path), o.out_dir, "skipped (already done)" if o.skipped else "done" if o.ok else f"failed: {o.error}")
               for o in outcomes]
    return index_page(out, entries, overview)
