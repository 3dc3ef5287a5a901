"""End to end: the Python API and the CLI (as a subprocess) on generated clips."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import cli

import emotiontrack
from emotiontrack.outputs.timeline import TIMELINE_COLUMNS, TIMELINE_SCHEMA, read_metadata
from emotiontrack.types import EMOTIONS


@pytest.mark.parametrize("detect_every_s", [0.0, 1.0])  # whole-frame looks at every frame, or following in between
def test_api_finds_and_tracks_both_faces(two_face_clip, models, tiny_model, detect_every_s):
    path, truth = two_face_clip
    df = emotiontrack.analyze(path, models=models, model=tiny_model, sample_fps=5, detect_every_s=detect_every_s)
    assert tuple(df.columns) == TIMELINE_COLUMNS
    assert df.aligned.mean() > 0.9  # the astronaut's landmarks are plausible
    assert df.frame.nunique() == 20  # 4 s at 5 fps
    assert df.time_s.max() < 4.0
    per_frame = df.groupby("frame").size()
    assert (per_frame == 2).mean() >= 0.9  # both faces found in nearly every analysed frame
    assert df.face_id.nunique() == 2
    # The face that starts on the left stays on the left half at the start and keeps one id.
    left = df[df.frame == 0].sort_values("x1").face_id.iloc[0]
    assert (df[df.face_id == left].x1 < 320).all()
    np.testing.assert_allclose(df[list(EMOTIONS)].sum(axis=1), 1, atol=1e-5)
    assert df.attrs["emotiontrack"]["analysed_frames"] == 20


def test_a_hidden_face_is_found_again_at_once_and_keeps_its_id(models, tiny_model, tmp_path):
    """Between whole-frame looks (every 2 s by default) known faces are only followed where the tracker expects
    them: a face hidden for a second that comes back further along must be found in the first analysed frame
    it is visible in again, with its old id."""
    from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

    a, b = astronaut_face(170), astronaut_face(150, mirrored=True)
    sprites = [Sprite(lambda t: a, linear_path((10, 20), (460, 60), 6.0, hidden=[(2.2, 3.2)]), "a"),
               Sprite(lambda t: b, linear_path((470, 190), (460, 180), 6.0), "b")]
    path = tmp_path / "hidden.mp4"
    write_clip(path, sprites, size=(640, 360), fps=25, duration_s=6.0)
    df = emotiontrack.analyze(path, models=models, model=tiny_model)
    assert df.attrs["emotiontrack"]["settings"]["detect_every_s"] == 2.0  # the default under test
    faces_at = df.groupby("time_s").size()
    assert (faces_at[(faces_at.index > 2.3) & (faces_at.index < 3.1)] == 1).all()  # hidden
    assert (faces_at[faces_at.index > 3.3] == 2).all()  # back, and found at once
    assert df.face_id.nunique() == 2


def test_cli_writes_timelines_and_reports_bad_inputs(two_face_clip, tiny_model, tmp_path):
    path, _ = two_face_clip
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video at all" * 100)
    out = tmp_path / "results"
    done = cli("analyze", path, broken, tmp_path / "missing.mov", "-o", out, "--model", tiny_model)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{broken}: not a readable video" in done.stderr
    assert "missing.mov: no such file or directory" in done.stderr
    assert "1 done, 2 failed" in done.stderr
    timeline = out / path.stem / "timeline.parquet"
    table = pq.read_table(timeline)
    schema = table.schema.remove_metadata()
    assert tuple(schema.names) == TIMELINE_COLUMNS
    for field in TIMELINE_SCHEMA:  # exact types
        assert schema.field(field.name) == field
    assert schema.field("smooth_emotion").type == pa.string() and schema.field("smooth_happy").type == pa.float32()
    meta = read_metadata(timeline)
    assert json.loads(meta["analysed_frames"]) == 8 and meta["source_fps"] == "25"  # 4 s at 2 fps
    assert len(meta["model_sha256"]) == 64 and json.loads(meta["settings"])["sample_fps"] == 2.0
    assert json.loads(meta["settings"])["crop"] == "aligned"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [path.stem]  # nothing written for failed inputs


def test_cli_same_stem_inputs_do_not_overwrite_each_other(two_face_clip, tiny_model, tmp_path):
    path, _ = two_face_clip
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    first.symlink_to(path), second.symlink_to(path)
    done = cli("analyze", first, second, "-o", tmp_path / "out", "--model", tiny_model, "--fps", "1")
    assert done.returncode == 0, done.stderr
    timelines = sorted((tmp_path / "out").glob("*/timeline.parquet"))
    assert len(timelines) == 2
    assert {pd.read_parquet(t).video.iloc[0] for t in timelines} == {str(first), str(second)}


def test_cli_image_folder(tiny_model, tmp_path):
    from PIL import Image
    from skimage import data

    folder = tmp_path / "stills"
    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "1.png")
    Image.fromarray(data.astronaut()).convert("L").save(folder / "2.jpg")
    Image.fromarray(data.coffee()).save(folder / "3.png")
    done = cli("analyze", folder, "-o", tmp_path / "out", "--model", tiny_model, "--min-face", "40")
    assert done.returncode == 0, done.stderr
    df = pd.read_parquet(tmp_path / "out" / "stills" / "timeline.parquet")
    assert sorted(df.frame) == [0, 1] and df.face_id.nunique() == 2
    single = cli("analyze", folder / "1.png", "-o", tmp_path / "single", "--model", tiny_model, "--min-face", "40")
    assert single.returncode == 0, single.stderr
    assert len(pd.read_parquet(tmp_path / "single" / "1" / "timeline.parquet")) == 1
    assert (tmp_path / "single" / "1" / "annotated" / "1.jpg").is_file()


@pytest.mark.parametrize("command", [[], ["analyze"], ["train"]])
def test_help_describes_every_option(command):
    done = cli(*command, "--help")
    assert done.returncode == 0 and "usage: emotiontrack" in done.stdout
    if command == ["analyze"]:
        for option in ("--output", "--fps", "--min-face", "--min-score", "--max-gap", "--margin", "--model", "--device"):
            assert option in done.stdout


@pytest.mark.parametrize("args,message", [
    (["analyze", "x.mp4", "--fps", "-1"], "--fps: must be 0 or more"),
    (["analyze", "x.mp4", "--device", "tpu"], "invalid choice"),
    (["analyze", "x.mp4", "--min-score", "2"], "between 0 and 1"),
])
def test_bad_option_values_fail_at_once(args, message):
    done = cli(*args, timeout=60)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_missing_model_is_one_line(tmp_path, two_face_clip):
    done = cli("analyze", two_face_clip[0], "-o", tmp_path, "--model", tmp_path / "none.keras")
    assert done.returncode == 1 and "model file not found" in done.stderr and "Traceback" not in done.stderr


def test_jobs_analyse_inputs_side_by_side_with_the_same_results(two_face_clip, tiny_model, tmp_path):
    path, _ = two_face_clip
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(path.read_bytes())
    done = cli("analyze", path, copy, "-o", tmp_path / "out", "--model", tiny_model, "--jobs", "2", "--no-video")
    assert done.returncode == 0, done.stderr
    first = pd.read_parquet(tmp_path / "out" / path.stem / "timeline.parquet")
    second = pd.read_parquet(tmp_path / "out" / "copy" / "timeline.parquet")
    pd.testing.assert_frame_equal(first.drop(columns="video"), second.drop(columns="video"))


def test_loading_models_through_the_api_leaves_the_callers_garbage_collector_alone(tiny_model):
    """The console script freezes what it loaded (runtime.loading); a program calling the API keeps its heap."""
    import gc

    from emotiontrack.config import AnalyzeConfig
    from emotiontrack.pipeline import load_models

    frozen, enabled = gc.get_freeze_count(), gc.isenabled()
    models = load_models(AnalyzeConfig(model=tiny_model, device="cpu"))
    assert models.classifier.model_sha256
    assert gc.get_freeze_count() == frozen and gc.isenabled() == enabled
