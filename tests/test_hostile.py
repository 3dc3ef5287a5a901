"""Hostile but realistic inputs (issue 19), built in code and run as a user runs them: each must end with a
clean outcome (one line, no traceback, nothing left behind) and, where it succeeds, a right result."""

import os
import subprocess
import sys

import pytest
from conftest import cli, leftovers
from PIL import Image

from emotiontrack.errors import InputError


def cli_prefix() -> list[str]:
    return [sys.executable, "-m", "emotiontrack.cli"]


def test_images_too_small_for_the_detectors_pyramid_are_analysed(tmp_path, tiny_model):
    """A favicon and thumbnails: MTCNN has no pyramid level below 20 px (it used to crash in torch.cat)."""
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path / "thumbs"
    folder.mkdir()
    photo = Image.fromarray(skimage_data.astronaut())
    for side in (16, 48, 64):
        photo.resize((side, side)).save(folder / f"{side}.png")
    done = cli("analyze", folder, "-o", tmp_path / "out", "--model", tiny_model)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and (tmp_path / "out" / "thumbs" / "timeline.parquet").is_file()


def test_a_narrow_video_and_a_min_face_larger_than_the_frame(tmp_path, ffmpeg, tiny_model):
    narrow = tmp_path / "narrow.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x2000:rate=5:duration=1",
                    "-pix_fmt", "yuv420p", str(narrow)], check=True)
    small = tmp_path / "small.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=5:duration=1",
                    "-pix_fmt", "yuv420p", str(small)], check=True)
    for args in ((narrow,), (small, "--min-face", "400")):
        done = cli("analyze", *args, "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not leftovers(tmp_path / "out")


def test_a_decompression_bomb_is_refused_in_one_line(tmp_path, monkeypatch):
    from emotiontrack.media.stills import read_image

    path = tmp_path / "bomb.png"
    Image.new("L", (400, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 300 // 4)  # PIL's own limit, lowered: 4x over it
    with pytest.raises(InputError, match="too large to decode safely"):
        read_image(path)


def test_an_unexpected_error_fails_its_input_alone_with_the_traceback_in_a_log(tmp_path, models, two_face_clip,
                                                                               monkeypatch):
    import emotiontrack.batch as batch
    from emotiontrack.config import AnalyzeConfig

    path, _ = two_face_clip

    def surprise(*args, **kwargs):
        raise RuntimeError("a library's surprise\nwith a second line")

    monkeypatch.setattr(batch, "analyze_video", surprise)
    out = tmp_path / "out"
    outcome = batch.analyze_input(path, out / "clip", AnalyzeConfig(device="cpu"), models)
    assert not outcome.ok and "\n" not in outcome.error
    assert "unexpected error (RuntimeError: a library's surprise)" in outcome.error and batch.ERROR_LOG in outcome.error
    log = (out / batch.ERROR_LOG).read_text()
    assert "Traceback" in log and "with a second line" in log and str(path) in log
    assert not (out / "clip").exists() and not leftovers(out)


def test_a_name_starting_with_a_dash_is_a_file_not_an_option(tmp_path, two_face_clip, tiny_model):
    path, _ = two_face_clip
    (tmp_path / "-dash.mp4").write_bytes(path.read_bytes())
    done = subprocess.run([*cli_prefix(), "analyze", "--no-video", "-o", "out", "--model", str(tiny_model), "--", "-dash.mp4"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "-dash" / "timeline.parquet").is_file()


@pytest.mark.timeout(120)
def test_a_fifo_and_a_symlink_loop_fail_at_once_in_one_line(tmp_path, tiny_model):
    os.mkfifo(tmp_path / "pipe.mp4")  # nobody writes to it: reading would block forever
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    done = cli("analyze", tmp_path / "pipe.mp4", tmp_path / "a", "-o", tmp_path / "out", "--model", tiny_model, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "pipe.mp4: not a regular file" in done.stderr and "Too many levels of symbolic links" in done.stderr
