"""Turn per-frame Faces into a tidy table and write it as Parquet, atomically.

One row per (analysed frame, face), with exactly the columns of TIMELINE_SCHEMA first. Run facts and
settings go into the Parquet schema metadata (flat string keys that pyarrow, pandas and DuckDB show).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from emotiontrack import __version__
from emotiontrack.config import AnalyzeConfig
from emotiontrack.files import atomic_file
from emotiontrack.types import EMOTIONS, Faces, VideoResult

TIMELINE_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("frame", pa.int64()),
        ("time_s", pa.float64()),
        ("face_id", pa.int64()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("x2", pa.float32()),
        ("y2", pa.float32()),
        ("det_score", pa.float32()),
        *[(name, pa.float32()) for name in EMOTIONS],
        ("emotion", pa.string()),
        # summary.add_smoothed puts its columns here, before the quality of each row:
        ("aligned", pa.bool_()),
        ("face_px", pa.float32()),  # the face's size: its box's longer side in source pixels
        ("align_error", pa.float32()),  # residual of the alignment, 48-px units (geometry/align.fit); NaN for box crops
    ]
)
SMOOTHED_COLUMNS = (*(f"smooth_{name}" for name in EMOTIONS), "smooth_emotion")
_AFTER_EMOTION = TIMELINE_SCHEMA.get_field_index("emotion") + 1
# A published timeline's columns, in order: the raw ones, the smoothed ones (summary.add_smoothed), the quality.
TIMELINE_COLUMNS = (*TIMELINE_SCHEMA.names[:_AFTER_EMOTION], *SMOOTHED_COLUMNS, *TIMELINE_SCHEMA.names[_AFTER_EMOTION:])


def to_table(video: str, faces_per_frame: Sequence[Faces], metadata: dict[str, object] | None = None) -> pa.Table:
    """The timeline table; `metadata` values are stored as strings (JSON for non-strings)."""
    faces = [f for f in faces_per_frame if len(f)]
    n = sum(len(f) for f in faces)
    xyxy = np.concatenate([f.xyxy for f in faces]) if faces else np.empty((0, 4), np.float32)
    probs = np.concatenate([f.probs for f in faces]) if faces else np.empty((0, len(EMOTIONS)), np.float32)
    columns = {
        "video": pa.array([video] * n, pa.string()),
        "frame": np.concatenate([np.full(len(f), f.frame_index, np.int64) for f in faces]) if faces else np.empty(0, np.int64),
        "time_s": np.concatenate([np.full(len(f), f.time_s, np.float64) for f in faces]) if faces else np.empty(0),
        "face_id": np.concatenate([f.track_id for f in faces]) if faces else np.empty(0, np.int64),
        **{name: xyxy[:, i] for i, name in enumerate(("x1", "y1", "x2", "y2"))},
        "det_score": np.concatenate([f.score for f in faces]) if faces else np.empty(0, np.float32),
        **{name: probs[:, i] for i, name in enumerate(EMOTIONS)},
        "emotion": pa.array(np.asarray(EMOTIONS, dtype=object)[probs.argmax(axis=1)] if n else [], pa.string()),
        "aligned": np.concatenate([f.aligned for f in faces]) if faces else np.empty(0, np.bool_),
        "face_px": np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]).astype(np.float32),
        "align_error": np.concatenate([f.align_error for f in faces]) if faces else np.empty(0, np.float32),
    }
    table = pa.table({name: columns[name] for name in TIMELINE_SCHEMA.names}, schema=TIMELINE_SCHEMA)
    return with_metadata(table, metadata or {})


def timeline_metadata(result: VideoResult, config: AnalyzeConfig, model_sha256: str) -> dict[str, object]:
    """The run facts and settings stored in the timeline's schema metadata."""
    info = result.info
    facts = {
        "emotiontrack_version": __version__,
        "model_sha256": model_sha256,
        "source": info.source,
        "source_fps": str(info.fps),
        "source_fps_float": float(info.fps),
        "duration_s": info.duration_s if math.isfinite(info.duration_s) else None,
        "width": info.width,
        "height": info.height,
        "rotation": info.rotation,
        "decoded_frames": result.frames_decoded,
        "analysed_frames": result.frames_analysed,
        "decode_errors": result.decode_errors,
        "settings": config.settings(),
        "precision": result.precision,  # what --precision auto chose on this machine
        "cuts_s": [round(t, 3) for t in result.cuts_s],  # shot cuts: no face id spans one
    }
    if result.live is not None:  # a live capture: when it started (UTC), how it went, how late rows came
        facts["started_at"] = result.live.get("started_at")
        facts["live"] = {**result.live, "latency_s": latency_summary(result.latency_s)}
    return facts


def latency_summary(latency_s: Sequence[float]) -> dict[str, float | None]:
    """Median, 95th percentile and maximum of a live capture's latencies (None without any)."""
    if not len(latency_s):
        return {"p50": None, "p95": None, "max": None}
    p50, p95 = np.percentile(latency_s, [50, 95])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "max": round(float(np.max(latency_s)), 3)}


def timeline_table(result: VideoResult, config: AnalyzeConfig, model_sha256: str, video: str | None = None) -> pa.Table:
    """The published timeline: rows, smoothed columns and metadata."""
    from emotiontrack.outputs.summary import add_smoothed

    table = to_table(video or result.info.source, result.faces, timeline_metadata(result, config, model_sha256))
    return add_smoothed(table, config.smooth_s)


def with_metadata(table: pa.Table, metadata: dict[str, object]) -> pa.Table:
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in encoded.items()}})


def read_metadata(path: Path) -> dict[str, str]:
    """The emotiontrack metadata of a timeline file, as strings."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"pandas") and k != b"ARROW:schema"}


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Write under a temporary name, then rename: a reader never sees a partial file."""
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path
