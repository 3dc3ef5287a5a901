import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from emotiontrack.outputs.timeline import TIMELINE_SCHEMA, read_metadata, to_table, write_parquet
from emotiontrack.types import EMOTIONS, Faces


def classified(frame: int, t: float, n: int, seed: int = 0) -> Faces:
    rng = np.random.default_rng(seed)
    faces = Faces.from_boxes(frame, t, rng.uniform(0, 100, (n, 4)), rng.uniform(0.9, 1, n))
    probs = rng.dirichlet(np.ones(len(EMOTIONS)), n).astype(np.float32)
    aligned = np.arange(n) % 2 == 0
    return replace(faces, track_id=np.arange(n, dtype=np.int64), probs=probs, aligned=aligned,
                   align_error=np.where(aligned, rng.uniform(0, 2, n), np.nan).astype(np.float32))


def test_table_has_exactly_the_timeline_columns_and_one_row_per_face():
    table = to_table("clip.mp4", [classified(0, 0.0, 2), Faces.empty(5, 0.2), classified(10, 0.4, 1, seed=1)])
    assert table.schema.remove_metadata() == TIMELINE_SCHEMA
    assert table.num_rows == 3
    frame = table.to_pandas()
    assert frame.frame.tolist() == [0, 0, 10] and frame.time_s.tolist() == [0.0, 0.0, 0.4]
    assert (frame.video == "clip.mp4").all()
    probs = frame[list(EMOTIONS)].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert frame.emotion.tolist() == [EMOTIONS[i] for i in probs.argmax(axis=1)]
    sides = np.maximum(frame.x2 - frame.x1, frame.y2 - frame.y1)
    np.testing.assert_allclose(frame.face_px, sides, rtol=1e-6)
    assert (frame.align_error.isna() == ~frame.aligned).all()  # NaN exactly for box crops


def test_empty_timeline_is_still_a_valid_table():
    table = to_table("x", [Faces.empty(0, 0.0)])
    assert table.num_rows == 0 and table.schema.remove_metadata() == TIMELINE_SCHEMA


def test_written_file_keeps_schema_and_metadata(tmp_path):
    meta = {"emotiontrack_version": "1", "settings": {"fps": 3.0}, "duration_s": 4.0}
    path = write_parquet(to_table("clip.mp4", [classified(0, 0.0, 2)], meta), tmp_path / "out" / "timeline.parquet")
    assert pq.read_schema(path).remove_metadata() == TIMELINE_SCHEMA
    stored = read_metadata(path)
    assert stored["emotiontrack_version"] == "1"
    assert json.loads(stored["settings"]) == {"fps": 3.0} and json.loads(stored["duration_s"]) == 4.0
    assert [p.name for p in path.parent.iterdir()] == ["timeline.parquet"]  # no temporary left behind
    assert pq.read_table(path).column("face_id").type == pa.int64()
