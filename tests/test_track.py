"""The tracker on synthetic box sequences: moving, crossing, vanishing, returning, entering late."""

import numpy as np

from emotiontrack.stages.track import FaceTracker, iou_matrix
from emotiontrack.types import Faces


def frame(t: float, boxes) -> Faces:
    return Faces.from_boxes(int(t * 25) if np.isfinite(t) else 0, t, np.asarray(boxes, np.float32).reshape(-1, 4), np.ones(len(boxes)))


def box(cx: float, cy: float, size: float = 100) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def run(tracker: FaceTracker, sequence) -> list[list[int]]:
    return [tracker.update(frame(t, boxes)).track_id.tolist() for t, boxes in sequence]


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10]], np.float64)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float64)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])


def test_moving_faces_keep_their_ids():
    # Two faces moving 60 px per sample (0.6 face sizes) in opposite directions, sampled at 3 fps.
    seq = [(i / 3, [box(200 + 60 * i, 300), box(1000 - 60 * i, 500)]) for i in range(12)]
    ids = run(FaceTracker(), seq)
    assert all(row == [0, 1] for row in ids)


def test_crossing_faces_keep_their_ids():
    # Two faces cross at the same height; at the crossing they overlap almost completely.
    seq = [(i / 5, [box(300 + 40 * i, 300), box(900 - 40 * i, 310)]) for i in range(16)]
    ids = run(FaceTracker(), seq)
    assert all(row == [0, 1] for row in ids), ids


def test_face_hidden_for_a_second_returns_with_its_id():
    tracker = FaceTracker(max_gap_s=2.0)
    seq = [(t, [box(300 + 50 * t, 300)]) for t in np.arange(0, 2, 1 / 3)]
    seq += [(t, []) for t in np.arange(2, 3.2, 1 / 3)]  # hidden for ~1.2 s while it keeps moving
    seq += [(t, [box(300 + 50 * t, 300)]) for t in np.arange(3.33, 5, 1 / 3)]
    ids = [i for row in run(tracker, seq) for i in row]
    assert set(ids) == {0}


def test_face_gone_longer_than_the_gap_gets_a_new_id():
    tracker = FaceTracker(max_gap_s=1.0)
    ids = run(tracker, [(0.0, [box(300, 300)]), (0.5, [box(300, 300)]), (2.0, [box(300, 300)])])
    assert ids == [[0], [0], [1]]


def test_late_entering_face_gets_a_new_id_and_others_keep_theirs():
    seq = [(i / 3, [box(300, 300)] + ([box(900, 300)] if i >= 6 else [])) for i in range(10)]
    ids = run(FaceTracker(), seq)
    assert ids[:6] == [[0]] * 6 and ids[6:] == [[0, 1]] * 4


def test_far_jump_is_a_different_face():
    ids = run(FaceTracker(), [(0.0, [box(200, 300)]), (0.2, [box(1000, 300)])])
    assert ids == [[0], [1]]


def test_ids_are_per_tracker():
    first, second = FaceTracker(), FaceTracker()
    run(first, [(0.0, [box(200, 300), box(600, 300)])])
    assert run(second, [(0.0, [box(200, 300)])]) == [[0]]


def test_stills_are_never_linked():
    tracker = FaceTracker()
    ids = run(tracker, [(float("nan"), [box(200, 300)]), (float("nan"), [box(200, 300)])])
    assert ids == [[0], [1]]
