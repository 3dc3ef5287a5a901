"""Segment planning and track stitching (cluster/segments.py) and worker placement, without Ray."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from emotiontrack.cluster.engine import gpu_share, worker_count
from emotiontrack.cluster.segments import Segment, match_tracks, plan_segments, stitch
from emotiontrack.config import AnalyzeConfig, RayOptions
from emotiontrack.types import Faces


def test_segments_cover_the_video_once_and_overlap_before_their_start():
    segments = plan_segments(60.0, 15.0, 5.0)
    assert [(s.start_s, s.own_start_s) for s in segments] == [(0, 0), (10, 15), (25, 30), (40, 45)]
    assert [s.end_s for s in segments[:-1]] == [s.own_start_s for s in segments[1:]] and math.isinf(segments[-1].end_s)
    assert plan_segments(12.0, 15.0, 5.0) == [Segment(0.0, 0.0, math.inf)]
    assert plan_segments(float("nan"), 15.0, 5.0) == [Segment(0.0, 0.0, math.inf)]
    assert len(plan_segments(60.0, 20.0, 5.0)) == 3  # no empty segment when the length divides the duration


def _frame(index: int, boxes: dict[int, tuple[float, float]], fps: float = 2.0) -> Faces:
    """A frame with one 100 px face per (track id -> top-left corner)."""
    ids = list(boxes)
    xyxy = np.array([[x, y, x + 100, y + 100] for x, y in boxes.values()], np.float32).reshape(-1, 4)
    faces = Faces.from_boxes(index, index / fps, xyxy, np.ones(len(ids)))
    return replace(faces, track_id=np.array(ids, np.int64))


def _walk(start: int, stop: int, ids: tuple[int, int]) -> list[Faces]:
    """Two faces moving right, frames start..stop-1 at 2 fps, with the given local ids."""
    return [_frame(i, {ids[0]: (10 + 3 * i, 20), ids[1]: (400 - 3 * i, 200)}) for i in range(start, stop)]


def test_stitching_continues_ids_across_segments():
    segments = plan_segments(30.0, 10.0, 4.0)  # frames at 2 fps: 0-19, 12-39, 32-59
    parts = [_walk(0, 20, (0, 1)), _walk(12, 40, (1, 0)), _walk(32, 60, (5, 7))]  # ids local to each segment
    timeline = stitch(segments, parts)
    assert [f.frame_index for f in timeline] == list(range(60))  # each frame once, from its own segment
    for f in timeline:  # the face on the left is always id 0
        left = int(np.argmin(f.xyxy[:, 0] - 3 * f.frame_index * np.array([1, -1])))
        assert f.track_id[left] == 0 and set(f.track_id.tolist()) == {0, 1}


def test_a_face_new_in_a_segment_gets_a_new_id_and_unrelated_tracks_stay_apart():
    earlier = [_frame(i, {0: (10, 20)}) for i in range(4)]
    later = [_frame(i, {3: (10, 20), 4: (500, 300)}) for i in range(4)]
    assert match_tracks(earlier, later) == {3: 0}
    far = [_frame(i, {3: (300, 20)}) for i in range(4)]  # no overlap with the earlier track
    assert match_tracks(earlier, far) == {}
    timeline = stitch([Segment(0, 0, 2.0), Segment(0, 2.0, math.inf)],
                      [earlier, [_frame(i, {3: (10, 20), 4: (500, 300)}) for i in range(8)]])
    assert sorted({int(i) for f in timeline for i in f.track_id}) == [0, 1]


def test_worker_placement():
    options = RayOptions()
    assert worker_count(options, 3, 16.0) == 3 and worker_count(options, 40, 16.0) == 16
    assert worker_count(options, None, 16.0) == 16  # segments: not bounded by the inputs
    assert worker_count(RayOptions(cpus_per_worker=4), 40, 16.0) == 4 and worker_count(RayOptions(workers=2), 40, 16.0) == 2
    assert gpu_share(options, 4, 0.0) == 0.0 and gpu_share(options, 4, 1.0) == 0.25 and gpu_share(options, 2, 4.0) == 1.0
    assert gpu_share(RayOptions(gpus_per_worker=0.5), 8, 1.0) == 0.5


def test_segment_length_is_a_setting_only_when_used():
    assert "segment_s" not in AnalyzeConfig().settings() and AnalyzeConfig(segment_s=60).settings()["segment_s"] == 60
