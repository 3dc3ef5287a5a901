"""benchmarks/wild.py's parts: faces rendered into a scene with known boxes, matching, and the paired interval."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import wild  # benchmarks/wild.py (conftest puts benchmarks/ on the path)

from emotiontrack.model.dataset import Split
from emotiontrack.types import EMOTIONS


@pytest.fixture(scope="module")
def faces_split() -> Split:
    """24 bright 48x48 squares with a dark 'mouth': something to render and find, with labels."""
    images = np.full((24, 48, 48), 200, np.uint8)
    images[:, 30:36, 14:34] = 40
    return Split(images, np.arange(24) % len(EMOTIONS), tuple(sorted(EMOTIONS)), "squares")


def test_a_blended_clip_puts_each_face_where_its_truth_says(tmp_path, faces_split):
    clip = tmp_path / "blended.mp4"
    truth = wild.render_clip(clip, wild.RENDERINGS["blended"], faces_split, seconds=3.2, seed=0)
    assert clip.stat().st_size > 0 and len(truth) == 80  # 3.2 s at 25 fps
    first, later = truth[0], truth[-1]
    assert len(first) == 6 and {f["face"] for f in first}.isdisjoint({f["face"] for f in later})  # new faces after 3 s
    from emotiontrack.media.decode import VideoReader
    from emotiontrack.media.probe import probe

    with VideoReader(probe(clip)) as reader:
        frame = next(iter(reader)).rgb.astype(np.float64)
    for face in first:
        x1, y1, x2, y2 = face["box"]
        assert 0.9 * 140 * 0.8 < x2 - x1 < 1.2 * 140 * 1.2 * 1.2  # breathing, tilted by up to 10 degrees
        centre = frame[(y1 + y2) // 2 - 5 : (y1 + y2) // 2 + 5, (x1 + x2) // 2 - 5 : (x1 + x2) // 2 + 5]
        assert centre.mean() > 150  # the bright face shows through its ellipse
    json.dumps(truth)  # the truth is kept beside a clip as JSON


def test_matching_and_the_paired_interval_over_faces(faces_split):
    truth = [[{"face": 0, "box": (0, 0, 100, 100)}, {"face": 1, "box": (200, 0, 300, 100)}]] * 25
    classes = faces_split.classes
    labels = faces_split.labels
    rows = []
    for frame in range(25):
        rows.append({"frame": frame, "x1": 40.0, "y1": 40.0, "x2": 60.0, "y2": 60.0, "emotion": classes[labels[0]],
                     "aligned": True, "face_px": 20.0, "align_error": 0.5})
        if frame < 12:  # the second face is found on the first half second only, and called wrong
            rows.append({"frame": frame, "x1": 240.0, "y1": 40.0, "x2": 260.0, "y2": 60.0, "emotion": classes[(labels[1] + 1) % 7],
                         "aligned": False, "face_px": 20.0, "align_error": np.nan})
    matches, visible = wild.match(pd.DataFrame(rows), truth, sample_fps=2.0)
    # 2 fps over 1 s of 25 frames: frames 0 and 13 analysed; face 1 is found on the first only
    assert visible == 4 and len(matches) == 3
    clean = labels.copy()  # the clean crops are all right
    result = wild.paired_loss(matches, labels, clean, classes)
    assert result["faces"] == 2 and result["detections"] == 3 and result["clean_accuracy"] == 1.0
    assert result["video_accuracy"] == pytest.approx(2 / 3) and result["loss"] == pytest.approx(1 / 3)
    low, high = result["loss_ci95"]  # resampling the two faces: 0 (face 0 twice) to 1 (face 1 twice)
    assert low == pytest.approx(0) and high == pytest.approx(1)
