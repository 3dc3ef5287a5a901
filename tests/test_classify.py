import numpy as np
import pytest

from emotiontrack.errors import ModelError
from emotiontrack.model.keras_model import build_network, with_calibrated_softmax
from emotiontrack.model.predictor import EmotionModel
from emotiontrack.model.settings import ARCHITECTURES
from emotiontrack.stages.classify import EmotionClassifier, crop_face
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


def _saved(model, path):
    model.save(path)
    return path


def _keras_probs(model, crops):
    return np.asarray(model.predict(crops[..., None].astype(np.float32), verbose=0))


def _randomise_batch_norm_statistics(model, rng):
    """Fresh networks have mean 0 / variance 1 statistics, which would hide a wrong BatchNorm fold."""
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2, variance.shape)])


def test_torch_runtime_computes_what_keras_computes(tiny_model, tmp_path):
    """analyze classifies with torch modules rebuilt from the .keras file: same probabilities as Keras,
    for the trained flip-averaging model and for a single-pass one with non-trivial BatchNorm statistics."""
    from emotiontrack.model.keras_model import load_model

    rng = np.random.default_rng(3)
    crops = rng.integers(0, 255, (9, 48, 48), dtype=np.uint8)
    trained = load_model(tiny_model)
    np.testing.assert_allclose(EmotionModel.load(tiny_model, precision="fp32").predict(crops), _keras_probs(trained, crops),
                               atol=1e-5)
    single = with_calibrated_softmax(build_network(7, ARCHITECTURES["vgg-s"]), list(EMOTIONS), 0.7)
    _randomise_batch_norm_statistics(single, rng)
    model = EmotionModel.load(_saved(single, tmp_path / "single.keras"), precision="fp32")
    assert not model.net.flip_average and model.net.temperature == pytest.approx(0.7)
    np.testing.assert_allclose(model.predict(crops), _keras_probs(single, crops), atol=1e-5)


def test_model_outputs_are_mapped_to_emotion_columns_by_name(tmp_path):
    labels = list(reversed(EMOTIONS))
    model = with_calibrated_softmax(build_network(7, ARCHITECTURES["vgg-s"]), labels, 1.0)
    loaded = EmotionModel.load(_saved(model, tmp_path / "reversed.keras"), precision="fp32")
    crops = np.random.default_rng(1).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict(crops), _keras_probs(model, crops)[:, ::-1], atol=1e-6)


def test_model_with_other_classes_is_refused(tmp_path):
    model = with_calibrated_softmax(build_network(3, ARCHITECTURES["vgg-s"]), ["cat", "dog", "cow"], 1.0)
    with pytest.raises(ModelError, match="not the seven emotions"):
        EmotionClassifier.load(_saved(model, tmp_path / "pets.keras"))


def test_model_without_our_head_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not an emotiontrack model"):
        EmotionClassifier.load(_saved(build_network(7, ARCHITECTURES["vgg-s"]), tmp_path / "logits.keras"))


def test_missing_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        EmotionClassifier.load(tmp_path / "nope.keras")
    (tmp_path / "bad.keras").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load"):
        EmotionClassifier.load(tmp_path / "bad.keras")


def test_aligned_crops_need_a_model_that_stores_its_face_geometry(tmp_path):
    path = _saved(with_calibrated_softmax(build_network(7, ARCHITECTURES["vgg-s"]), list(EMOTIONS), 1.0), tmp_path / "old.keras")
    with pytest.raises(ModelError, match="use --crop box"):
        EmotionClassifier.load(path)
    assert EmotionClassifier.load(path, crop="box").geometry is None


def test_bf16_inference_gives_the_float32_probabilities_within_a_hair(tiny_model):
    """Where the CPU has bf16 instructions, analyze classifies in bf16 (faster); the answers barely move."""
    from emotiontrack.runtime import cpu_has_bf16

    crops = np.random.default_rng(5).integers(0, 255, (32, 48, 48), dtype=np.uint8)
    auto = EmotionModel.load(tiny_model)
    assert auto.bf16 == cpu_has_bf16() and auto.precision in ("bf16", "fp32")  # no int8 calibration for this model
    fp32 = EmotionModel.load(tiny_model, precision="fp32").predict(crops)
    bf16 = EmotionModel.load(tiny_model, precision="bf16").predict(crops)
    assert np.abs(fp32 - bf16).max() < 0.03 and not np.array_equal(fp32, bf16)
    np.testing.assert_allclose(bf16.sum(axis=1), 1, atol=1e-5)


def test_on_a_cpu_every_batch_has_one_shape_and_padding_changes_no_answer(tiny_model):
    """oneDNN keeps a copy of the weights per input shape: batches of one shape keep memory flat."""
    model = EmotionModel.load(tiny_model, precision="fp32")
    shapes = set()
    model.net.register_forward_pre_hook(lambda module, inputs: shapes.add(tuple(inputs[0].shape)))
    crops = np.random.default_rng(4).integers(0, 255, (21, 48, 48), dtype=np.uint8)
    together = model.predict(crops)
    one_by_one = np.concatenate([model.predict(crops[i : i + 1]) for i in range(len(crops))])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert shapes == {(8, 1, 48, 48)} and together.shape == (21, 7)


def test_bf16_is_not_chosen_where_onednn_is_capped_below_it(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes any x86 CPU compute like an AVX2-only one: bf16 would be emulated there."""
    from emotiontrack import runtime

    runtime.cpu_has_bf16.cache_clear()
    try:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
        assert runtime.cpu_has_bf16() is False
    finally:
        runtime.cpu_has_bf16.cache_clear()
