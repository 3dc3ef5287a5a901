"""Many inputs into one output folder: one subfolder per input, complete or absent, failures isolated.

`analyze_input` analyses one input into a staging folder (outputs/publish.py): the frame sinks (face crops,
the annotated video or stills) receive frames during the analysis; then the timeline, the per-face table
and the charts are written while the sinks close (the video encodes its last frames), then the report
(which shows the crops), the manifest, and the folder is published. An EmotionTrackError or OSError fails
that input alone.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from emotiontrack.config import AnalyzeConfig
from emotiontrack.errors import EmotionTrackError, OutputError
from emotiontrack.media.live import LiveReader
from emotiontrack.media.probe import probe
from emotiontrack.outputs.charts import plot_overview, plot_shares, plot_timelines
from emotiontrack.outputs.publish import (
    is_complete,
    is_same_result,
    manifest_key,
    publish,
    source_identity,
    staging_dir,
    write_manifest,
)
from emotiontrack.outputs.report import index_page, video_report
from emotiontrack.outputs.summary import BestCrops, faces_table
from emotiontrack.outputs.timeline import timeline_metadata, timeline_table, write_parquet
from emotiontrack.outputs.video import AnnotatedStills, AnnotatedVideo
from emotiontrack.pipeline import Models, analyze_video
from emotiontrack.s3 import (
    S3Prefix,
    download,
    download_object,
    object_identity,
    read_manifest,
    upload_files,
    upload_result,
)
from emotiontrack.stages.classify_worker import FrameSink
from emotiontrack.types import VideoInfo, VideoResult, path_text

log = logging.getLogger(__name__)

TIMELINE, FACES, VIDEO = "timeline.parquet", "faces.parquet", "annotated.mp4"
ERROR_LOG = "emotiontrack-errors.log"  # in the output folder: tracebacks of unexpected failures


@dataclass(frozen=True)
class Outcome:
    """What happened to one input."""

    path: Path
    out_dir: Path
    error: str | None = None
    faces: int = 0
    video_s: float = 0.0
    frames_analysed: int = 0
    wall_s: float = 0.0
    skipped: bool = False  # already complete from an earlier run with the same model and settings
    stage_s: dict[str, float] | None = None  # wall seconds per pipeline stage
    source: str | None = None  # the s3:// URI of an input downloaded to `path`

    @property
    def name(self) -> str:
        """The input as the user named it."""
        return self.source or path_text(self.path)

    @property
    def ok(self) -> bool:
        return self.error is None


def analyze_input(path: Path, out_dir: Path, config: AnalyzeConfig, models: Models,
                  on_start: Callable[[VideoInfo], None] | None = None, on_frames: Callable[[int], None] | None = None,
                  overwrite: bool = False, remote: S3Prefix | None = None, source: str | None = None) -> Outcome:
    """Analyse one input and publish its outputs into `out_dir`, and from there to `remote` if given (an
    s3:// prefix; `out_dir` then keeps only faces.parquet, for the run's summary). With `source` (an s3://
    URI) the input is downloaded to `path` first and removed afterwards. Any error fails this input alone."""
    started = time.monotonic()

    def work() -> Outcome:
        identity = _identity(path, source)
        if not overwrite and identity is not None and already_done(identity, out_dir, config,
                                                                   models.classifier.model_sha256, remote):
            faces = pd.read_parquet(out_dir / FACES)
            return Outcome(path, out_dir, faces=len(faces), skipped=True, wall_s=time.monotonic() - started,
                           source=source)
        if source is not None:
            download_object(source, path)
        info = probe(path)
        if on_start:
            on_start(info)
        with staged(out_dir, remote) as staging:
            result = analyze_into(staging, path, info, config, models, on_frames, source, identity)
        return _done(path, out_dir, result, started, source)

    try:
        return guarded(path, out_dir, started, work, source)
    finally:
        if source is not None:
            path.unlink(missing_ok=True)


def guarded(path: Path, out_dir: Path, started: float, work: Callable[[], Outcome], source: str | None = None) -> Outcome:
    """`work()`'s outcome, or a failed one: an EmotionTrackError or OSError in one line, anything else (a
    library's surprise, a bug) in one line with its traceback appended to the run's error log. The one path
    by which every input fails alone, here and on Ray (whole inputs, and stitched segments)."""
    try:
        return work()
    except EmotionTrackError as exc:
        error = str(exc)
    except OSError as exc:  # disk full, folder removed mid-run...
        error = f"{path}: cannot write results ({exc.strerror or exc})"
    except Exception as exc:
        error = _unexpected(path, out_dir, exc)
    error = error.replace(str(path), source) if source else error  # an s3:// input is named by its URI
    return Outcome(path, out_dir, error=error, wall_s=time.monotonic() - started, source=source)


@contextmanager
def staged(out_dir: Path, remote: S3Prefix | None) -> Iterator[Path]:
    """A staging folder for one result: published into `out_dir` (and uploaded to `remote`, keeping only
    faces.parquet locally) if the block completes, removed whatever happens."""
    staging = staging_dir(out_dir)
    try:
        yield staging
        publish(staging, out_dir)
        if remote is not None:
            upload_result(out_dir, remote)
            _keep_only(out_dir, FACES)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _done(path: Path, out_dir: Path, result: VideoResult, started: float, source: str | None = None) -> Outcome:
    info = result.info
    return Outcome(path, out_dir, faces=result.face_count, video_s=info.duration_s if math.isfinite(info.duration_s) else 0.0,
                   frames_analysed=result.frames_analysed, wall_s=time.monotonic() - started,
                   stage_s=dict(result.times), source=source)


def _identity(path: Path, source: str | None) -> dict[str, object] | None:
    """The input's identity for manifests; None for a local path that is not there (probe says why)."""
    if source is not None:
        return object_identity(source)
    try:
        return source_identity(path)
    except OSError:
        return None


def already_done(identity: dict[str, object], out_dir: Path, config: AnalyzeConfig, model_sha256: str,
                  remote: S3Prefix | None) -> bool:
    """A complete result for this source, model and settings exists (locally, or under `remote`; its
    faces.parquet is then fetched for the run's summary)."""
    if remote is None:
        return is_complete(identity, out_dir, config, model_sha256)
    manifest = read_manifest(remote)
    return (manifest is not None and is_same_result(manifest, identity, config, model_sha256)
            and download(remote, FACES, out_dir / FACES))


def _keep_only(folder: Path, name: str) -> None:
    for entry in folder.iterdir():
        if entry.name != name:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _unexpected(path: Path, out_dir: Path, exc: Exception) -> str:
    """Append the traceback to the output folder's error log; the one-line message that names it."""
    log_path = out_dir.parent / ERROR_LOG
    try:
        with log_path.open("a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {path}\n{traceback.format_exc()}\n")
        where = f"details in {log_path}"
    except OSError:
        where = "no log could be written"
    first_line = next(iter(str(exc).splitlines()), "")
    return f"{path}: unexpected error ({exc.__class__.__name__}: {first_line}); {where}"


def frame_sinks(staging: Path, info: VideoInfo, config: AnalyzeConfig) -> list[FrameSink]:
    """The face crops, and the annotated video (or annotated stills) unless --no-video."""
    sinks: list[FrameSink] = [BestCrops(staging / "faces")]
    if config.video and info.is_stills:
        sinks.append(AnnotatedStills(staging / "annotated"))
    elif config.video:
        interval = config.sample_interval_s(float(info.fps))
        sinks.append(AnnotatedVideo(staging / VIDEO, info, config.smooth_s, config.max_gap_s, interval))
    return sinks


def analyze_into(staging: Path, path: Path, info: VideoInfo, config: AnalyzeConfig, models: Models,
                 on_frames: Callable[[int], None] | None, source: str | None = None,
                 identity: dict[str, object] | None = None, live: LiveReader | None = None,
                 sinks: Sequence[FrameSink] = ()) -> VideoResult:
    """Analyse one input and write all its outputs, the manifest last, into `staging`. `source` names the
    input in the outputs (its s3:// URI; default: its path), `identity` its manifest (default: the path's);
    a live source's frames come from `live`; `sinks` get the frames beside the usual outputs."""
    name = source or path_text(path)
    started = time.monotonic()
    sinks = [*frame_sinks(staging, info, config), *sinks]
    try:
        result = analyze_video(info, config, models, on_frames, sinks, live=live)
        if result.decode_errors:
            log.warning("%s: %d decoder errors (damaged data); analysed the %d frames that decoded (container says %s)",
                        path, result.decode_errors, result.frames_decoded, info.n_frames or "unknown")
        with ThreadPoolExecutor(1, thread_name_prefix="close") as closer:
            closing = closer.submit(_close_all, sinks, result)  # the video encodes its last frames meanwhile
            with result.times.measure("write"):
                faces, charts = _write_tables_and_charts(staging, path, name, result, config, models.classifier.model_sha256)
            closing.result()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    _finish(staging, name, identity or source_identity(path), result, config, models.classifier.model_sha256,
            faces, charts, started)
    return result


def publish_result(path: Path, out_dir: Path, result: Callable[[], VideoResult], config: AnalyzeConfig,
                   model_sha256: str, started: float, remote: S3Prefix | None = None) -> Outcome:
    """Write and publish the outputs of an analysis made elsewhere (segments, stitched by `result()`): the
    timeline, faces and charts, the report and the manifest; no annotated video or face crops. Any error,
    in the stitching too, fails this input alone (`guarded`)."""

    def work() -> Outcome:
        stitched = result()
        with staged(out_dir, remote) as staging:
            faces, charts = _write_tables_and_charts(staging, path, path_text(path), stitched, config, model_sha256)
            _finish(staging, path_text(path), source_identity(path), stitched, config, model_sha256, faces, charts,
                    started)
        return _done(path, out_dir, stitched, started)

    return guarded(path, out_dir, started, work)


def _finish(staging: Path, name: str, identity: dict[str, object], result: VideoResult, config: AnalyzeConfig,
            model_sha256: str, faces: pd.DataFrame, charts: list[Path], started: float) -> None:
    """The report, then the manifest (last: it says the folder is complete)."""
    links = [f for f in (VIDEO, "annotated/", TIMELINE, FACES) if (staging / f).exists()]
    video_report(staging, name, faces, timeline_metadata(result, config, model_sha256), charts, links)
    write_manifest(staging, manifest_key(identity, config, model_sha256),
                   {"wall_s": time.monotonic() - started, "stage_seconds": dict(result.times)})


def _close_all(sinks: Sequence[FrameSink], result: VideoResult) -> None:
    with result.times.measure("annotate"):
        for sink in sinks:
            try:
                sink.close()
            except OutputError as exc:
                if not sink.optional:
                    raise
                log.warning("%s; the analysis is published without it", exc)
                sink.abort()


def _write_tables_and_charts(staging: Path, path: Path, name: str, result: VideoResult, config: AnalyzeConfig,
                             model_sha256: str) -> tuple[pd.DataFrame, list[Path]]:
    table = timeline_table(result, config, model_sha256, name)
    write_parquet(table, staging / TIMELINE)
    timeline = table.to_pandas()
    faces = faces_table(timeline, name, config.sample_interval_s(float(result.info.fps)))
    write_parquet(pa.Table.from_pandas(faces, preserve_index=False), staging / FACES)
    title = path_text(path.name or path)
    charts = [c for c in (plot_timelines(timeline, faces, title, staging / "timeline.png"),
                          plot_shares(faces, title, staging / "shares.png")) if c is not None]
    return faces, charts


def write_run_summary(out: Path, outcomes: Sequence[Outcome], remote: S3Prefix | None = None) -> Path | None:
    """`out/summary.parquet` (all faces of the run's finished inputs), `overview.png` and `index.html`; with
    `remote`, uploaded there (a result's faces.parquet is fetched from it when its worker ran elsewhere)."""
    if remote is not None:
        for o in outcomes:
            if o.ok and not (o.out_dir / FACES).is_file():
                download(remote.child(o.out_dir.name), FACES, o.out_dir / FACES)
    parts = [pd.read_parquet(o.out_dir / FACES) for o in outcomes if o.ok and (o.out_dir / FACES).is_file()]
    if parts:
        summary = pd.concat(parts, ignore_index=True)
        write_parquet(pa.Table.from_pandas(summary, preserve_index=False), out / "summary.parquet")
        overview = plot_overview(summary, out / "overview.png") if len(parts) > 1 else None
    else:
        overview = None
    entries = [(o.name, o.out_dir, "skipped (already done)" if o.skipped else "done" if o.ok else f"failed: {o.error}")
               for o in outcomes]
    index = index_page(out, entries, overview)
    if remote is not None:
        upload_files([p for p in (out / "summary.parquet", out / "overview.png", index, out / ERROR_LOG)
                      if p is not None and p.is_file()], remote)
    return index
