"""Real MTCNN on scikit-image's astronaut photograph."""

import subprocess
import sys

import numpy as np
import pytest
from skimage import data

from emotiontrack.stages.detect import MTCNNDetector
from emotiontrack.types import Frame

# Where the astronaut's face is in data.astronaut() (512x512), by eye: x 170-260, y 50-160.
FACE = np.array([170, 50, 260, 160])


@pytest.fixture(scope="module")
def detector():
    return MTCNNDetector(min_face=40, min_score=0.9, device="cpu")


def test_finds_the_astronaut_face(detector):
    faces = detector.detect([Frame(0, 0.0, data.astronaut())])[0]
    assert len(faces) == 1
    x1, y1, x2, y2 = faces.xyxy[0]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert FACE[0] < cx < FACE[2] and FACE[1] < cy < FACE[3]
    assert 50 < x2 - x1 < 140
    assert faces.score[0] > 0.99
    assert faces.track_id[0] == -1 and np.isnan(faces.probs).all()
    assert (faces.landmarks[0, :, 0] > x1).all() and (faces.landmarks[0, :, 0] < x2).all()


def test_boxes_are_in_source_pixels_at_any_detection_scale(detector):
    image = data.astronaut()
    big = np.kron(image, np.ones((2, 2, 1), np.uint8))  # 1024x1024: same face, twice the size
    small_box = detector.detect([Frame(0, 0.0, image)])[0].xyxy[0]
    big_box = MTCNNDetector(min_face=100, device="cpu").detect([Frame(0, 0.0, big)])[0].xyxy[0]
    np.testing.assert_allclose(big_box / 2, small_box, atol=8)


def test_boxes_are_clipped_to_the_frame(detector):
    shifted = np.zeros_like(data.astronaut())
    shifted[:, :-150] = data.astronaut()[:, 150:]  # the face now touches the left edge
    shifted = shifted[20:]
    faces = detector.detect([Frame(0, 0.0, shifted)])[0]
    assert len(faces) >= 1
    assert (faces.xyxy[:, [0, 2]] >= 0).all() and (faces.xyxy[:, [0, 2]] <= shifted.shape[1]).all()
    assert (faces.xyxy[:, [1, 3]] >= 0).all() and (faces.xyxy[:, [1, 3]] <= shifted.shape[0]).all()


def test_no_face_gives_an_empty_record(detector):
    frames = [Frame(3, 0.5, np.full((240, 320, 3), 128, np.uint8)), Frame(4, 0.6, np.zeros((8, 8, 3), np.uint8))]
    results = detector.detect(frames)
    assert [len(r) for r in results] == [0, 0]
    assert results[0].frame_index == 3 and results[0].time_s == 0.5


def test_min_score_filters(detector):
    strict = MTCNNDetector(min_face=40, min_score=1.0, device="cpu")
    assert len(strict.detect([Frame(0, 0.0, data.astronaut())])[0]) <= len(detector.detect([Frame(0, 0.0, data.astronaut())])[0])


def test_second_look_finds_a_face_where_the_tracker_expects_it(detector):
    image = data.astronaut()
    faces = detector.detect([Frame(0, 0.0, image)])[0]
    expected = faces.xyxy.astype(np.float64) + [12, -8, 12, -8]  # where a track would predict it
    again = detector.detect_around(Frame(0, 0.0, image), expected)
    assert len(again) == 1
    np.testing.assert_allclose(again.xyxy[0], faces.xyxy[0], atol=12)
    nothing = detector.detect_around(Frame(0, 0.0, image), np.array([[400.0, 380.0, 480.0, 470.0]]))
    assert len(nothing) == 0  # no face there: the looser look must not invent one


def test_follow_refines_a_known_face_and_finds_none_where_there_is_none(detector):
    image = data.astronaut()
    faces = detector.detect([Frame(0, 0.0, image)])[0]
    expected = faces.xyxy.astype(np.float64) + [10, 8, 14, 8]  # a tracker's prediction, a little off
    followed = detector.follow(Frame(5, 2.5, image), expected)
    assert len(followed) == 1 and followed.frame_index == 5 and followed.time_s == 2.5
    # O-Net pulls the box back onto the face: closer to the full look's box than the prediction was.
    assert np.abs(followed.xyxy[0] - faces.xyxy[0]).max() < np.abs(expected[0] - faces.xyxy[0]).max()
    assert followed.score[0] > 0.9
    assert (followed.landmarks[0, :, 0] > followed.xyxy[0, 0]).all() and (followed.landmarks[0, :, 0] < followed.xyxy[0, 2]).all()
    assert len(detector.follow(Frame(5, 2.5, image), np.array([[400.0, 380.0, 480.0, 470.0]]))) == 0
    assert len(detector.follow(Frame(5, 2.5, image), np.empty((0, 4)))) == 0


def test_importing_the_detector_leaves_torch_dynamo_for_code_that_uses_it():
    # torchvision's roi_align would import torch._dynamo (~1.5 s of start-up); its one function still works.
    script = ("import sys, emotiontrack.stages.detect; print('torch._dynamo' in sys.modules);"
              "r = sys.modules['torchvision.ops.roi_align']; print(r.is_compile_supported('cpu'));"
              "import torch._dynamo.utils as u; print(u.is_compile_supported('cpu'))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"
    assert out[1] == out[2] == "True"


def test_the_torch_dynamo_stand_in_hands_out_the_real_module_for_anything_else():
    script = ("import sys; from emotiontrack.stages.facenet import torch_dynamo_deferred\n"
              "with torch_dynamo_deferred():\n"
              "    from torch._dynamo.utils import counters\n"
              "import torch._dynamo.utils as real\n"
              "print(counters is real.counters, real.__file__ is not None)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
