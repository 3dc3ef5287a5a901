import numpy as np
import pytest

from emotiontrack.types import EMOTIONS, Faces


def make(n: int) -> Faces:
    xyxy = np.array([[i * 10, 0, i * 10 + 5, 5] for i in range(n)], np.float32)
    return Faces.from_boxes(3, 0.12, xyxy, np.linspace(0.5, 1.0, n))


def test_new_faces_are_untracked_and_unclassified():
    faces = make(3)
    assert len(faces) == 3
    assert faces.track_id.tolist() == [-1, -1, -1]
    assert np.isnan(faces.probs).all() and faces.probs.shape == (3, len(EMOTIONS))
    assert faces.landmarks.shape == (3, 5, 2)


def test_mask_and_index_selection_keep_columns_aligned():
    faces = make(4)
    picked = faces[faces.score > 0.7]
    assert len(picked) == 2
    np.testing.assert_array_equal(picked.xyxy, faces.xyxy[2:])
    assert len(faces[[0, 3]]) == 2 and faces[[0, 3]].xyxy[1, 0] == 30
    assert len(faces[1]) == 1


def test_empty_has_zero_rows_of_every_column():
    faces = Faces.empty(7, 1.5)
    assert len(faces) == 0 and faces.frame_index == 7 and faces.time_s == 1.5
    assert faces.xyxy.shape == (0, 4) and faces.probs.shape == (0, 7)
    assert len(faces[faces.score > 0]) == 0


@pytest.mark.parametrize("field,value", [("score", np.zeros(2, np.float32)), ("xyxy", np.zeros((3, 3), np.float32))])
def test_mismatched_shapes_are_rejected(field, value):
    faces = make(3)
    with pytest.raises(ValueError, match=field):
        Faces(**{**{f: getattr(faces, f) for f in faces.__slots__}, field: value})


def test_merge_concatenates_every_column():
    merged = Faces.merge([make(2), Faces.empty(3, 0.12), make(1)])
    assert len(merged) == 3 and merged.frame_index == 3
    assert merged.xyxy.shape == (3, 4) and merged.landmarks.shape == (3, 5, 2)
