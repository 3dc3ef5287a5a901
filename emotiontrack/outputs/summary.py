"""Per-face summaries: smoothed timeline columns, one row per face, and a representative crop per face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from emotiontrack.files import write_jpeg
from emotiontrack.geometry.crops import square_crop
from emotiontrack.outputs.smooth import smooth_timeline
from emotiontrack.types import EMOTIONS, Faces, Frame

CROP_SIZE = 160


def add_smoothed(table: pa.Table, smooth_s: float) -> pa.Table:
    """Insert smooth_<emotion> columns (per face, over time) and smooth_emotion after `emotion`; raw columns stay."""
    probs = np.stack([table.column(e).to_numpy() for e in EMOTIONS], axis=1) if table.num_rows else np.empty((0, 7), np.float32)
    smoothed = smooth_timeline(table.column("face_id").to_numpy(), table.column("time_s").to_numpy(), probs, smooth_s)
    at = table.schema.get_field_index("emotion") + 1
    for i, name in enumerate(EMOTIONS):
        table = table.add_column(at + i, pa.field(f"smooth_{name}", pa.float32()), pa.array(smoothed[:, i], pa.float32()))
    labels = np.asarray(EMOTIONS, dtype=object)[smoothed.argmax(axis=1)] if len(smoothed) else []
    return table.add_column(at + len(EMOTIONS), pa.field("smooth_emotion", pa.string()), pa.array(labels, pa.string()))


def faces_table(timeline: pd.DataFrame, video: str, sample_interval_s: float) -> pd.DataFrame:
    """One row per face: when and how long it was seen, mean probabilities, share of time per dominant
    (smoothed) emotion, the dominant emotion, and its crop's relative path.

    seconds_visible = analysed frames x the analysis interval (for stills, NaN)."""
    columns = ["video", "face_id", "first_s", "last_s", "seconds_visible", "frames_analysed",
               *[f"mean_{e}" for e in EMOTIONS], *[f"share_{e}" for e in EMOTIONS], "dominant_emotion", "crop"]
    if timeline.empty:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})
    rows = []
    for face_id, face in timeline.groupby("face_id", sort=True):
        shares = face["smooth_emotion"].value_counts(normalize=True)
        rows.append({
            "video": video,
            "face_id": int(face_id),
            "first_s": float(face.time_s.min()),
            "last_s": float(face.time_s.max()),
            "seconds_visible": len(face) * sample_interval_s,
            "frames_analysed": len(face),
            **{f"mean_{e}": float(face[e].mean()) for e in EMOTIONS},
            **{f"share_{e}": float(shares.get(e, 0.0)) for e in EMOTIONS},
            "dominant_emotion": str(shares.idxmax()),
            "crop": f"faces/{int(face_id)}.jpg",
        })
    return pd.DataFrame(rows, columns=columns).astype({c: _dtype(c) for c in columns})


def _dtype(column: str) -> str:
    if column in ("video", "dominant_emotion", "crop"):
        return "string"
    return "int64" if column in ("face_id", "frames_analysed") else "float64"


class BestCrops:
    """Frame sink keeping, per face id, a crop from the frame where the detector was most confident;
    `close` writes them as <folder>/<id>.jpg."""

    wants_all_frames = False
    optional = False

    def __init__(self, folder: Path):
        self.folder = folder
        self._best: dict[int, tuple[float, np.ndarray]] = {}

    def push(self, frame: Frame, faces: Faces | None) -> None:
        if faces is None:
            return
        for face_id, box, score in zip(faces.track_id, faces.xyxy, faces.score):
            if score > self._best.get(int(face_id), (-1.0, None))[0]:
                crop, _ = square_crop(frame.rgb, box, 1.4, CROP_SIZE)
                self._best[int(face_id)] = (float(score), crop)

    def close(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for face_id, (_, crop) in sorted(self._best.items()):
            write_jpeg(self.folder / f"{face_id}.jpg", crop)

    def abort(self) -> None:
        self._best.clear()
