"""Training, resuming, evaluating, bad dataset layouts, and the model file across Keras backends."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FER_ZIP, cli, needs_fer, write_image_dataset

from emotiontrack.errors import InputError
from emotiontrack.types import EMOTIONS


def test_trained_model_is_calibrated_and_readable_by_evaluate(tiny_model, tiny_dataset, tmp_path):
    from emotiontrack.model.keras_model import load_model, model_labels

    model = load_model(tiny_model)
    assert model_labels(model) == sorted(EMOTIONS)
    summary = json.loads((tiny_model.parent / "tiny.keras.ckpt" / "summary.json").read_text())
    assert summary["temperature"] > 0 and summary["validation"]["ece_after_calibration"] >= 0
    from emotiontrack.runtime import cpu_has_bf16

    assert summary["config"]["bf16"] == cpu_has_bf16()  # bf16 asked for (the default), used only where it is fast
    done = cli("evaluate", tiny_dataset / "validation", "--model", tiny_model, "--json", "--plots", tmp_path / "plots")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n"] == 21 and 0 <= report["accuracy"] <= 1 and 0 <= report["macro_f1"] <= 1
    assert set(report["per_class"]) == set(EMOTIONS) and np.asarray(report["confusion"]).sum() == 21
    assert 0 <= report["ece"] <= 1 and report["images_per_s"] > 0
    assert (tmp_path / "plots" / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 1000
    table = cli("evaluate", tiny_dataset / "validation", "--model", tiny_model)
    assert table.returncode == 0 and "macro-F1" in table.stdout and "surprise" in table.stdout
    by_name = cli("evaluate", tiny_dataset, "--split", "validation", "--model", tiny_model, "--json")
    assert by_name.returncode == 0 and json.loads(by_name.stdout)["confusion"] == report["confusion"]
    missing = cli("evaluate", tiny_dataset, "--split", "test", "--model", tiny_model)
    assert missing.returncode == 1 and "no folder named 'test'" in missing.stderr


@pytest.fixture(scope="module")
def learnable(tmp_path_factory, landmark_detector) -> tuple[Path, Path]:
    """A dataset of one texture per class, and a model trained on it."""
    from emotiontrack.model.train import TrainConfig, train

    data = tmp_path_factory.mktemp("learnable")
    write_image_dataset(data / "train", per_class=60, seed=3)
    write_image_dataset(data / "validation", per_class=10, seed=4)
    out = data / "m.keras"
    train(TrainConfig(data=data, output=out, epochs=8, batch_size=16, learning_rate=3e-3), landmark_detector)
    return data, out


def test_a_learnable_task_is_learned(learnable):
    from emotiontrack.model.evaluate import evaluate

    data, model = learnable
    assert evaluate(data / "validation", model)["accuracy"] > 0.5  # chance is 1/7


def test_a_student_learns_its_teachers_answers_not_the_labels(learnable, tmp_path):
    import shutil

    from emotiontrack.model.checkpoint import checkpoint_dir, load_checkpoint_config
    from emotiontrack.model.dataset import load_split
    from emotiontrack.model.distill import teacher_targets
    from emotiontrack.model.evaluate import evaluate

    data, teacher = learnable
    wrong = tmp_path / "wrong"  # every training face filed under the next emotion's folder
    for index, name in enumerate(EMOTIONS):
        shutil.copytree(data / "train" / name, wrong / EMOTIONS[(index + 1) % len(EMOTIONS)])
    out = tmp_path / "student.keras"
    done = cli("train", wrong, "--val-dir", data / "validation", "-o", out, "--epochs", "8", "--batch-size", "16",
               "--lr", "3e-3", "--teacher", teacher, "--teacher", teacher, "--distill-weight", "1")
    assert done.returncode == 0, done.stderr
    assert evaluate(data / "validation", out)["accuracy"] > 0.5  # learning the labels would score ~0
    assert load_checkpoint_config(out).teachers == (teacher, teacher)
    cached = list(checkpoint_dir(out).glob("teacher-targets-*.npy"))
    assert len(cached) == 1  # computed once, kept for a resume
    split = load_split(wrong)
    targets = teacher_targets([teacher], split, tmp_path)  # one teacher averages to what two copies give
    np.testing.assert_allclose(targets, np.load(cached[0]), atol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1, atol=1e-5)
    true = (split.labels - 1) % len(EMOTIONS)  # undo the shift (EMOTIONS is sorted, as the classes are)
    assert (targets.argmax(1) == true).mean() > 0.5
    missing = cli("train", wrong, "--val-dir", data / "validation", "-o", tmp_path / "x.keras", "--teacher", tmp_path / "no.keras")
    assert missing.returncode == 1 and "--teacher: model not found" in missing.stderr


def test_resume_continues_where_the_run_stopped(tiny_dataset, tmp_path, landmark_detector):
    from emotiontrack.model.checkpoint import checkpoint_dir
    from emotiontrack.model.train import TrainConfig, train

    config = TrainConfig(data=tiny_dataset, output=tmp_path / "m.keras", epochs=2, batch_size=16)

    def stop_after_first_epoch(epoch, logs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, landmark_detector, on_epoch=stop_after_first_epoch)
    state = json.loads((checkpoint_dir(config.output) / "state.json").read_text())
    assert state["epochs_done"] == 1 and not config.output.exists()
    import torch

    after_one = torch.load(checkpoint_dir(config.output) / "last.pt", weights_only=False)
    summary = train(config, landmark_detector, resume=True)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert config.output.exists()
    state = torch.load(checkpoint_dir(config.output) / "last.pt", weights_only=False)
    momentum = [value["momentum_buffer"] for value in state["optimizer"]["state"].values()]
    assert state["epochs_done"] == 2 and momentum and all(m is not None for m in momentum)
    # The resumed run reproduces an uninterrupted one exactly (same batches, same dropout draws).
    straight = TrainConfig(data=tiny_dataset, output=tmp_path / "straight.keras", epochs=2, batch_size=16)
    train(straight, landmark_detector)
    uninterrupted = torch.load(checkpoint_dir(straight.output) / "last.pt", weights_only=False)
    for name, value in state["model"].items():
        torch.testing.assert_close(value, uninterrupted["model"][name], msg=name)
    assert not torch.equal(after_one["model"]["head.5.weight"], state["model"]["head.5.weight"])


def test_a_copied_checkpoint_resumes_under_its_new_name(tiny_dataset, tmp_path, landmark_detector):
    from emotiontrack.model.checkpoint import checkpoint_dir, load_checkpoint_config
    from emotiontrack.model.train import TrainConfig, train

    original = TrainConfig(data=tiny_dataset, output=tmp_path / "m.keras", epochs=1, batch_size=16)
    train(original, landmark_detector)
    original.output.unlink()
    copy = tmp_path / "copy.keras"
    shutil.copytree(checkpoint_dir(original.output), checkpoint_dir(copy))
    summary_before = (checkpoint_dir(original.output) / "summary.json").read_text()
    config = load_checkpoint_config(copy)
    assert config.output == copy
    train(dataclasses.replace(config, flip_average=False), landmark_detector, resume=True)  # after the last epoch: saves again
    assert copy.exists() and not original.output.exists()
    assert (checkpoint_dir(original.output) / "summary.json").read_text() == summary_before
    assert not json.loads((checkpoint_dir(copy) / "summary.json").read_text())["config"]["flip_average"]


def test_cli_resume_without_checkpoint_is_one_line(tmp_path):
    done = cli("train", tmp_path, "-o", tmp_path / "m.keras", "--resume")
    assert done.returncode == 1 and "nothing to resume" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("breakage,message", [
    ("no_validation", "expected train/<emotion>/ and validation/<emotion>/"),
    ("empty_class", "missing or without images"),
    ("extra_class_in_validation", "are not among"),
    ("bad_image", "not a readable image"),
])
def test_bad_dataset_layouts(tmp_path, breakage, message):
    from emotiontrack.model.dataset import load_train_val

    root = tmp_path / "data"
    write_image_dataset(root / "train", per_class=2)
    if breakage != "no_validation":
        write_image_dataset(root / "validation", per_class=1)
    if breakage == "empty_class":
        for f in (root / "train" / "fear").iterdir():
            f.unlink()
    if breakage == "extra_class_in_validation":
        write_image_dataset(root / "validation", per_class=1, classes=("contempt",))
    if breakage == "bad_image":
        (root / "train" / "sad" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=message):
        load_train_val(root)
    done = cli("train", root, "-o", tmp_path / "m.keras", "--epochs", "1")
    assert done.returncode == 1 and message.split("<")[0] in done.stderr and "Traceback" not in done.stderr


def test_model_predicts_the_same_on_tensorflow_and_torch(tiny_model, tmp_path):
    pytest.importorskip("tensorflow")
    crops = np.random.default_rng(0).integers(0, 255, (16, 48, 48, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", crops)
    script = (
        "import sys, numpy as np; from emotiontrack.model.keras_model import load_model; from emotiontrack.model.keras_model import keras;"
        f"m = load_model(r'{tiny_model}'); assert keras.backend.backend() == sys.argv[1];"
        f"np.save(r'{tmp_path}/' + sys.argv[1] + '.npy', keras.ops.convert_to_numpy(m([np.load(r'{tmp_path}/x.npy')])))"
    )
    for backend in ("tensorflow", "torch"):
        done = subprocess.run([sys.executable, "-c", script, backend], env={**os.environ, "KERAS_BACKEND": backend},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    tf_probs, torch_probs = np.load(tmp_path / "tensorflow.npy"), np.load(tmp_path / "torch.npy")
    assert np.abs(tf_probs - torch_probs).max() <= 1e-4
    np.testing.assert_allclose(torch_probs.sum(axis=1), 1, atol=1e-5)


@needs_fer()
def test_train_reads_the_fer2013_zip_directly(tmp_path, landmark_detector):
    from emotiontrack.model.train import TrainConfig, train

    config = TrainConfig(data=FER_ZIP, output=tmp_path / "fer.keras", epochs=1, limit=256, batch_size=64)
    summary = train(config, landmark_detector)
    assert summary["train_size"] == 256 and summary["val_size"] == 3589
    assert Path(summary["model"]).is_file()


def test_init_starts_from_an_earlier_checkpoint(tiny_model, tiny_dataset, tmp_path, landmark_detector):
    import shutil

    import torch

    from emotiontrack.model.checkpoint import checkpoint_dir
    from emotiontrack.model.train import TrainConfig, train

    checkpoint = tmp_path / "start.pt"
    shutil.copy(checkpoint_dir(tiny_model) / "last.pt", checkpoint)
    before = torch.load(checkpoint, weights_only=False)["model"]
    config = TrainConfig(data=tiny_dataset, output=tmp_path / "ft.keras", epochs=1, batch_size=16, init=checkpoint,
                         learning_rate=1e-6, block_dropout=0.3)  # another dropout, the same weights
    summary = train(config, landmark_detector)
    state = torch.load(checkpoint_dir(tmp_path / "ft.keras") / "last.pt", weights_only=False)
    after = state["model"]
    assert state["architecture"]["block_dropout"] == 0.3 and summary["architecture"]["block_dropout"] == 0.3
    assert summary["history"][0]["epoch"] == 1
    # A tiny learning rate moves the weights only a little: training continued from them, not from scratch.
    assert max(float((before[k].float() - after[k].float()).abs().max()) for k in before if "weight" in k) < 0.01
    checkpoint.unlink()  # a resumed run needs its own checkpoint only (a fresh clone may lack the one it started from)
    assert train(config, landmark_detector, resume=True)["history"] == summary["history"]
    done = cli("train", tiny_dataset, "-o", tmp_path / "x.keras", "--init", tiny_model)
    assert done.returncode == 1 and "not a training checkpoint" in done.stderr


def test_evaluate_tta_averages_ten_views(tiny_model, tiny_dataset):
    from emotiontrack.model.evaluate import shifted

    images = np.arange(2 * 5 * 6, dtype=np.uint8).reshape(2, 5, 6)
    moved = shifted(images, 2, 1)
    np.testing.assert_array_equal(moved[:, 1:, 2:], images[:, :-1, :-2])  # content moved right 2, down 1
    plain = json.loads(cli("evaluate", tiny_dataset / "validation", "--model", tiny_model, "--json").stdout)
    done = cli("evaluate", tiny_dataset / "validation", "--model", tiny_model, "--json", "--tta")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tta_views"] == 10 and plain["tta_views"] == 2 and report["n"] == plain["n"] == 21
    assert report["nll"] != plain["nll"]  # other views, other probabilities


def test_training_on_aligned_views_scores_validation_faces_cropped_the_same_way(tiny_dataset, tmp_path, landmark_detector):
    from emotiontrack.model.train import TrainConfig, train

    config = TrainConfig(data=tiny_dataset, output=tmp_path / "m.keras", epochs=1, batch_size=16, aligned_views=0.5)
    summary = train(config, landmark_detector, cache_dir=tmp_path / "cache")
    assert 0 <= summary["history"][0]["val_aligned_accuracy"] <= 1
    assert len(list((tmp_path / "cache").glob("landmarks-*.npy"))) == 2  # training and validation faces
    # Textures have (next to) no landmarks: the model gets FER2013's geometry, as without aligned views.
    assert summary["geometry"]["fallback"] == "FER2013"


def test_weight_averaging_saves_the_mean_of_the_last_epochs(tiny_dataset, tmp_path, landmark_detector):
    import torch

    from emotiontrack.model.checkpoint import checkpoint_dir
    from emotiontrack.model.keras_model import load_model
    from emotiontrack.model.train import TrainConfig, train

    config = TrainConfig(data=tiny_dataset, output=tmp_path / "swa.keras", epochs=3, swa_epochs=2, swa_lr=0.01,
                         batch_size=16)
    checkpoints = []

    def keep_checkpoint(epoch, logs):
        checkpoints.append(torch.load(checkpoint_dir(config.output) / "last.pt", weights_only=False))
        if epoch == 1 and len(checkpoints) == 2:
            raise KeyboardInterrupt  # stop once inside the averaged epochs, then resume

    with pytest.raises(KeyboardInterrupt):
        train(config, landmark_detector, on_epoch=keep_checkpoint)
    summary = train(config, landmark_detector, resume=True, on_epoch=keep_checkpoint)
    assert [round(h["lr"], 6) for h in summary["history"]] == [0.05, 0.01, 0.01]  # warm-up to the peak, then constant
    first, second, third = (c["model"]["features.0.weight"] for c in checkpoints)
    mean = (second + third) / 2  # the first epoch is not averaged
    torch.testing.assert_close(checkpoints[-1]["average"]["module.features.0.weight"], mean)
    assert not torch.allclose(mean, third, atol=1e-6)
    model = load_model(config.output)
    kernel = [w for w in model.weights if tuple(w.shape) == (3, 3, 1, 64)]
    assert len(kernel) == 1
    np.testing.assert_allclose(np.asarray(kernel[0].numpy()), mean.permute(2, 3, 1, 0).numpy(), atol=1e-6)
    done = cli("train", tiny_dataset, "-o", tmp_path / "x.keras", "--epochs", "2", "--swa-epochs", "3")
    assert done.returncode == 1 and "--swa-epochs 3 is more than --epochs 2" in done.stderr


def test_learning_rate_warms_up_decays_and_holds_for_averaged_epochs():
    from emotiontrack.model.train import TrainConfig, learning_rate

    def rates(**settings):
        config = TrainConfig(data=Path(), epochs=4, learning_rate=0.1, swa_lr=0.01, **settings)
        return np.array([learning_rate(config, step, 10) for step in range(40)])

    cosine = rates()
    assert cosine[9] == pytest.approx(0.1) and cosine[0] == pytest.approx(0.01) and cosine[-1] < 1e-3
    assert np.all(np.diff(cosine[10:]) < 0)  # decays to zero after the one-epoch warm-up
    averaged = rates(swa_epochs=2)
    assert np.all(np.diff(averaged[10:20]) < 0) and averaged[19] > 0.01
    assert np.allclose(averaged[20:], 0.01)  # the averaged epochs hold the constant rate
    only_averaged = rates(swa_epochs=4)
    assert only_averaged[9] == pytest.approx(0.01) and np.allclose(only_averaged[9:], 0.01)


def test_accuracy_and_macro_f1_come_with_bootstrap_intervals_that_narrow_with_more_faces():
    from emotiontrack.model.evaluate import classification_report

    rng = np.random.default_rng(0)
    widths = []
    for n in (200, 5000):
        labels = rng.integers(0, 7, n)
        probs = rng.random((n, 7))
        probs[np.arange(n)[: int(0.7 * n)], labels[: int(0.7 * n)]] += 5  # ~70% right
        report = classification_report(probs / probs.sum(axis=1, keepdims=True), labels, list(EMOTIONS))
        for name in ("accuracy", "macro_f1"):
            low, high = report[f"{name}_ci95"]
            assert low < report[name] < high
        widths.append(report["accuracy_ci95"][1] - report["accuracy_ci95"][0])
    # a binomial proportion's interval: ~2 * 1.96 * sqrt(p (1 - p) / n)
    assert widths[0] == pytest.approx(2 * 1.96 * np.sqrt(0.7 * 0.3 / 200), rel=0.3)
    assert widths[1] < widths[0] / 3
