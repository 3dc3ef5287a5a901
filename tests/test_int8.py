"""int8 inference (model/int8.py): the calibration shipped beside the model, and what int8 changes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import FER_ZIP, cli, needs_fer

from emotiontrack.config import default_model_path
from emotiontrack.errors import ModelError
from emotiontrack.model import int8
from emotiontrack.model.predictor import EmotionModel, resolve_precision
from emotiontrack.model.torchnet import load_network

pytestmark = pytest.mark.skipif(not int8.available(), reason="torch has no oneDNN quantized engine here")


def test_the_shipped_calibration_belongs_to_the_shipped_model():
    path = default_model_path()
    calibration = int8.load_calibration(path, int8.file_sha256(path))
    assert calibration is not None, f"{int8.sidecar_path(path)} was made for another model: run emotiontrack quantize"
    assert EmotionModel.load(path, precision="int8").precision == "int8"


@needs_fer()
def test_int8_names_the_same_emotions_as_float32_on_validation_faces():
    """On 1,000 PublicTest faces the shipped model in int8 agrees with float32 on at least 98% of faces and
    loses at most a point (the whole split: models/MODEL_CARD.md)."""
    from emotiontrack.model.dataset import load_split

    split = load_split(FER_ZIP, split="validation", require_all=False)
    chosen = np.random.default_rng(0).choice(len(split.images), 1000, replace=False)
    images, labels = split.images[chosen], split.labels[chosen]
    fp32 = EmotionModel.load(default_model_path(), precision="fp32").predict(images).argmax(axis=1)
    q8 = EmotionModel.load(default_model_path(), precision="int8").predict(images).argmax(axis=1)
    assert (fp32 == q8).mean() >= 0.98
    assert (q8 == labels).mean() >= (fp32 == labels).mean() - 0.01


def test_quantize_writes_a_calibration_that_int8_then_runs_on(tiny_model, tiny_dataset, tmp_path):
    model = tmp_path / "tiny.keras"
    shutil.copy(tiny_model, model)
    done = cli("quantize", tiny_dataset, "--model", model, "--split", "train", "--compare", "")
    assert done.returncode == 0, done.stderr
    calibration = json.loads(int8.sidecar_path(model).read_text())
    assert calibration["model_sha256"] == int8.file_sha256(model) and calibration["engine"] == "onednn"
    crops = np.random.default_rng(2).integers(0, 255, (24, 48, 48), dtype=np.uint8)
    fp32 = EmotionModel.load(model, precision="fp32").predict(crops)
    q8 = EmotionModel.load(model, precision="int8").predict(crops)
    assert np.abs(fp32 - q8).max() < 0.1 and not np.array_equal(fp32, q8)
    np.testing.assert_allclose(q8.sum(axis=1), 1, atol=1e-5)


def test_a_calibration_made_for_another_model_is_not_used(tiny_model, tmp_path):
    model = tmp_path / "tiny.keras"
    shutil.copy(tiny_model, model)
    int8.sidecar_path(model).write_text(json.dumps({"model_sha256": "0" * 64, "activation_ranges": []}))
    with pytest.raises(ModelError, match="no int8 calibration"):
        EmotionModel.load(model, precision="int8")
    assert EmotionModel.load(model).precision in ("bf16", "fp32")


def test_auto_precision_is_bf16_where_native_int8_on_other_x86_cpus_fp32_on_a_gpu(monkeypatch):
    from emotiontrack.model import predictor

    monkeypatch.setattr(predictor, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu", has_int8=True) == "int8"
    assert resolve_precision("auto", "cpu", has_int8=False) == "fp32"
    assert resolve_precision("auto", "cuda", has_int8=True) == "fp32"
    monkeypatch.setattr(predictor, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cpu", has_int8=True) == "bf16"
    assert resolve_precision("fp32", "cpu", has_int8=True) == "fp32"
    with pytest.raises(ModelError, match="x86 CPU"):
        resolve_precision("int8", "cuda", has_int8=True)


def test_analyze_records_the_precision_it_ran_in(tmp_path, two_face_clip, tiny_model):
    import pyarrow.parquet as pq

    model = tmp_path / "tiny.keras"
    shutil.copy(tiny_model, model)
    faces = np.random.default_rng(0).integers(0, 255, (64, 48, 48), dtype=np.uint8)
    int8.write_calibration(model, int8.calibrate(load_network(model), faces, int8.file_sha256(model)))
    done = cli("analyze", two_face_clip[0], "-o", tmp_path / "out", "--model", model, "--precision", "int8", "--no-video")
    assert done.returncode == 0, done.stderr
    metadata = pq.read_schema(tmp_path / "out" / "two faces" / "timeline.parquet").metadata
    assert metadata[b"precision"] == b"int8" and json.loads(metadata[b"settings"])["precision"] == "int8"
    missing = cli("analyze", two_face_clip[0], "-o", tmp_path / "out2", "--model", tiny_model, "--precision", "int8")
    assert missing.returncode == 1 and "emotiontrack quantize" in missing.stderr
