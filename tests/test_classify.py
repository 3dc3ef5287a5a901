import numpy as np
import pytest

from emotiontrack.classify import EmotionClassifier, crop_face
from emotiontrack.errors import ModelError
from emotiontrack.model import build_network, with_calibrated_softmax
from emotiontrack.types import EMOTIONS, Faces


def test_crop_is_a_square_with_margin_around_the_box():
    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[50:150, 100:200] = 255  # a white 100x100 square: the "face"
    tight = crop_face(rgb, np.array([100, 50, 200, 150]), margin=0.0)
    assert tight.shape == (48, 48) and tight.min() > 250  # all face
    wide = crop_face(rgb, np.array([100, 50, 200, 150]), margin=0.25)  # 150 px square: 25 px border each side
    assert wide[24, 24] > 250 and wide[2, 24] < 5 and wide[24, 2] < 5
    inner = (wide > 128).sum() / wide.size
    assert inner == pytest.approx((100 / 150) ** 2, abs=0.05)


def test_crop_outside_the_frame_repeats_the_edge():
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[:, :10] = 200
    crop = crop_face(rgb, np.array([-20, 20, 30, 70]), margin=0.0)
    assert crop.shape == (48, 48)
    assert crop[:, :5].mean() > 190  # left of the frame: repeated bright edge, not black


def test_classifier_gives_seven_probabilities_summing_to_one(models):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(2)]
    faces = [Faces.from_boxes(i, i / 10, np.array([[10, 10, 60, 70], [80, 20, 150, 100]][: i + 1]), np.ones(i + 1))
             for i in range(2)]
    out = models.classifier.classify(frames, faces)
    assert [len(f) for f in out] == [1, 2]
    for f in out:
        assert f.probs.shape == (len(f), len(EMOTIONS))
        np.testing.assert_allclose(f.probs.sum(axis=1), 1, atol=1e-5)
    assert models.classifier.classify([frames[0]], [Faces.empty(0, 0.0)])[0].probs.shape == (0, 7)


def test_model_outputs_are_mapped_to_emotion_columns_by_name():
    labels = list(reversed(EMOTIONS))
    model = with_calibrated_softmax(build_network(7), labels, 1.0)
    classifier = EmotionClassifier(model)
    crops = np.random.default_rng(1).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    raw = np.asarray(model.predict(crops[..., None].astype(np.float32), verbose=0))
    np.testing.assert_allclose(classifier.predict(crops), raw[:, ::-1], atol=1e-6)


def test_model_with_other_classes_is_refused():
    model = with_calibrated_softmax(build_network(3), ["cat", "dog", "cow"], 1.0)
    with pytest.raises(ModelError, match="not the seven emotions"):
        EmotionClassifier(model)


def test_missing_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        EmotionClassifier.load(tmp_path / "nope.keras")
    (tmp_path / "bad.keras").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load"):
        EmotionClassifier.load(tmp_path / "bad.keras")
