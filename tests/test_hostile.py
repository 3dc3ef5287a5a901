"""Hostile but realistic inputs (issue 19), built in code and run as a user runs them: each must end with a
clean outcome (one line, no traceback, nothing left behind) and, where it succeeds, a right result."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import cli, leftovers
from PIL import Image

from emotiontrack.errors import InputError
from emotiontrack.outputs.timeline import read_metadata


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


@pytest.mark.parametrize("where", ["stitching", "writing"])
def test_an_unexpected_error_in_a_stitched_result_fails_that_input_alone(tmp_path, models, two_face_clip, monkeypatch,
                                                                         where):
    """Segments analysed on Ray are stitched and published by the driver: a surprise there (in the stitching or
    in writing) fails that input alone, as `analyze_input` does, instead of ending the whole run."""
    import time

    import emotiontrack.batch as batch
    from emotiontrack.config import AnalyzeConfig
    from emotiontrack.media.probe import probe
    from emotiontrack.pipeline import analyze_video

    path, _ = two_face_clip
    config = AnalyzeConfig(device="cpu", video=False)
    analysed = analyze_video(probe(path), config, models)

    def stitched():
        if where == "stitching":
            raise ValueError("segments that do not line up")
        return analysed

    def broken_chart(*args, **kwargs):
        raise RuntimeError("a plotting library's surprise")

    monkeypatch.setattr(batch, "plot_timelines", broken_chart)
    out = tmp_path / "out"
    out.mkdir()  # the run's output folder (checked writable before any work)
    outcome = batch.publish_result(path, out / "clip", stitched, config, models.classifier.model_sha256,
                                   time.monotonic())
    error = "ValueError: segments that do not line up" if where == "stitching" else "RuntimeError: a plotting"
    assert not outcome.ok and f"unexpected error ({error}" in outcome.error and "\n" not in outcome.error
    assert "Traceback" in (out / batch.ERROR_LOG).read_text()
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


def test_the_stream_a_player_shows_is_analysed(tmp_path, ffmpeg, tiny_model):
    """Two video streams where the second is the default (a player shows it), and a cover picture."""
    two = tmp_path / "two.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=2", "-f", "lavfi",
                    "-i", "testsrc2=size=640x360:rate=10:duration=3", "-map", "0", "-map", "1", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-disposition:v:0", "0", "-disposition:v:1", "default", str(two)], check=True)
    cover = tmp_path / "cover.jpg"
    Image.new("RGB", (64, 64), (200, 0, 0)).save(cover)
    covered = tmp_path / "covered.mkv"  # a one-frame picture stream first, the video (default) second
    subprocess.run([ffmpeg, "-v", "error", "-i", str(two), "-i", str(cover), "-map", "1", "-map", "0:v:1", "-c", "copy",
                    "-disposition:v:0", "0", "-disposition:v:1", "default", str(covered)], check=True)
    done = cli("analyze", two, covered, "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("two", "covered"):
        meta = read_metadata(tmp_path / "out" / name / "timeline.parquet")
        assert (meta["width"], meta["height"], meta["decoded_frames"]) == ("640", "360", "30")


def test_a_display_matrix_of_45_degrees_is_analysed_as_stored_and_said(tmp_path, ffmpeg, tiny_model):
    plain = tmp_path / "plain.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=2",
                    "-pix_fmt", "yuv420p", str(plain)], check=True)
    turned = tmp_path / "turned.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-display_rotation:v:0", "45", "-i", str(plain), "-c", "copy", str(turned)],
                   check=True)
    done = cli("analyze", turned, "-o", tmp_path / "out", "--model", tiny_model)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "turns the video by 45 degrees; frames are analysed as stored" in done.stderr
    meta = read_metadata(tmp_path / "out" / "turned" / "timeline.parquet")
    assert (meta["width"], meta["height"], meta["decoded_frames"]) == ("320", "240", "20")


def test_a_folder_of_undecodable_images_fails_instead_of_publishing_nothing(tmp_path, tiny_model):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg")
    (folder / "b.png").write_bytes(b"not a png")
    done = cli("analyze", folder, "-o", tmp_path / "out", "--model", tiny_model)
    assert done.returncode == 1 and "broken: none of its images could be read" in done.stderr
    assert not (tmp_path / "out" / "broken").exists() and not leftovers(tmp_path / "out")


def test_frame_numbers_keep_counting_across_a_resolution_change(tmp_path, ffmpeg, tiny_model):
    """Conferencing recordings change resolution mid-stream; ffmpeg's showinfo restarts its count there."""
    parts = []
    for i, size in enumerate(("320x240", "640x360")):
        part = tmp_path / f"{i}.ts"
        subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=10:duration=2",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-muxdelay", "0", "-muxpreload", "0",
                        "-output_ts_offset", str(2 * i), str(part)], check=True)
        parts.append(part.read_bytes())
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(parts))
    done = cli("analyze", joined, "-o", tmp_path / "out", "--model", tiny_model, "--fps", "0", "--no-video")
    assert done.returncode == 0, done.stderr[-2000:]
    from emotiontrack.media.decode import VideoReader
    from emotiontrack.media.probe import probe

    with VideoReader(probe(joined)) as reader:
        indices = [frame.index for frame in reader]
    assert indices == list(range(40))


def test_sixteen_audio_channels_are_mixed_down_for_the_annotated_video(tmp_path, ffmpeg, tiny_model):
    """Production cameras record 16-channel PCM, which AAC cannot hold: the video keeps a stereo mix."""
    source = tmp_path / "camera.mov"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=2", "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=2", "-filter_complex", "[1:a]aformat=channel_layouts=hexadecagonal[a]",
                    "-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", str(source)],
                   check=True)
    done = cli("analyze", source, "-o", tmp_path / "out", "--model", tiny_model)
    assert done.returncode == 0, done.stderr[-2000:]
    from emotiontrack.media.tools import ffprobe_path

    probe = subprocess.run([ffprobe_path(), "-v", "error", "-show_entries", "stream=codec_name,channels", "-of", "csv=p=0",
                            str(tmp_path / "out" / "camera" / "annotated.mp4")], capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["h264", "aac,2"]


def test_a_failing_video_encoder_costs_the_video_not_the_analysis(tmp_path, ffmpeg, two_face_clip, tiny_model):
    """An ffmpeg that decodes but cannot encode (as with audio AAC cannot hold): the timeline is published."""
    broken = tmp_path / "ffmpeg"
    broken.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = libx264 ] && {{ echo "Unsupported encoder setup" >&2; exit 1; }}; done\n'
                      f'exec "{ffmpeg}" "$@"\n')
    broken.chmod(0o755)
    path, _ = two_face_clip
    done = cli("analyze", path, "-o", tmp_path / "out", "--model", tiny_model, env={"EMOTIONTRACK_FFMPEG": str(broken)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "annotated video: ffmpeg" in done.stderr and "published without it" in done.stderr
    assert ".partial-" not in done.stderr  # the message names the input, not the staging folder
    result = tmp_path / "out" / path.stem
    assert (result / "timeline.parquet").is_file() and not (result / "annotated.mp4").exists()
    assert not leftovers(tmp_path / "out")


def test_same_named_inputs_from_two_runs_both_keep_their_results(tmp_path, two_face_clip, tiny_model):
    path, _ = two_face_clip
    for folder in ("day1", "day2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "clip.mp4").write_bytes(path.read_bytes())
        done = cli("analyze", tmp_path / folder / "clip.mp4", "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
        assert done.returncode == 0, done.stderr[-2000:]
    manifests = sorted((tmp_path / "out").glob("clip*/manifest.json"))
    sources = {json.loads(m.read_text())["source"] for m in manifests}
    assert sources == {str(tmp_path / "day1" / "clip.mp4"), str(tmp_path / "day2" / "clip.mp4")}
    again = cli("analyze", tmp_path / "day1" / "clip.mp4", "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
    assert "skipped" in again.stderr and len(list((tmp_path / "out").glob("clip*/manifest.json"))) == 2


def test_an_image_folder_edited_in_place_is_analysed_again(tmp_path, tiny_model):
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path / "stills"
    folder.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(folder / "a.png")
    Image.fromarray(skimage_data.coffee()).save(folder / "b.png")
    args = ("analyze", folder, "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
    assert cli(*args).returncode == 0
    assert "skipped" in cli(*args).stderr
    stat = (folder / "b.png").stat()
    Image.fromarray(skimage_data.astronaut()[::-1]).save(folder / "b.png")  # replaced in place, folder unchanged
    os.utime(folder, ns=(stat.st_atime_ns, folder.stat().st_mtime_ns))
    redone = cli(*args)
    assert redone.returncode == 0 and "skipped" not in redone.stderr


def test_an_input_given_twice_is_analysed_once(tmp_path, two_face_clip, tiny_model):
    path, _ = two_face_clip
    done = cli("analyze", path, path, "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
    assert done.returncode == 0 and "1 done" in done.stderr and "given more than once" in done.stderr
    assert len(pd.read_parquet(tmp_path / "out" / "summary.parquet").video.unique()) == 1


def test_a_file_named_corrupt_is_not_counted_as_damaged(tmp_path, two_face_clip, tiny_model):
    path, _ = two_face_clip
    named = tmp_path / "corrupt error.mp4"
    named.write_bytes(path.read_bytes())
    done = cli("analyze", named, "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
    assert done.returncode == 0 and "decoder errors" not in done.stderr
    assert read_metadata(tmp_path / "out" / "corrupt error" / "timeline.parquet")["decode_errors"] == "0"


@pytest.mark.timeout(300)
def test_jobs_2_stops_within_seconds_of_ctrl_c_and_leaves_nothing(tmp_path, tiny_model):
    import signal
    import time

    from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

    face = astronaut_face(160)
    clips = []
    for name in ("one", "two"):
        clip = tmp_path / f"{name}.mp4"
        write_clip(clip, [Sprite(lambda t: face, linear_path((10, 10), (300, 120), 30.0))], size=(480, 270),
                   duration_s=30.0)
        clips.append(clip)
    out = tmp_path / "out"
    proc = subprocess.Popen([*cli_prefix(), "analyze", *map(str, clips), "-o", str(out), "--model", str(tiny_model),
                             "--fps", "0", "--jobs", "2"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while len([p for p in out.glob(".*.partial-*")]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - interrupted < 15
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert not leftovers(out) and not (out / "one").exists() and not (out / "two").exists()


def test_staging_left_by_a_killed_run_is_swept_and_a_cut_replacement_put_back(tmp_path, two_face_clip, tiny_model):
    out = tmp_path / "out"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a process that is gone: what a killed run leaves looks like this
    (out / f".clip.partial-{dead.pid}-0000").mkdir(parents=True)
    (out / f".clip.partial-{dead.pid}-0000" / ".timeline.x.tmp.parquet").write_bytes(b"half")
    (out / f".kept.old-{dead.pid}-1").mkdir()
    (out / f".kept.old-{dead.pid}-1" / "manifest.json").write_text("{}")
    path, _ = two_face_clip
    done = cli("analyze", path, "-o", out, "--model", tiny_model, "--no-video")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not leftovers(out) and (out / "kept" / "manifest.json").is_file()


@pytest.mark.timeout(600)
def test_the_timeline_does_not_depend_on_drawing_the_video(tmp_path, models):
    """The annotated video is an output: with it or without it (--no-video), the same rows, boxes, emotions."""
    from emotiontrack.batch import analyze_input
    from emotiontrack.config import AnalyzeConfig
    from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

    faces = [astronaut_face(s, mirrored=bool(i % 2)) for i, s in enumerate((150, 130, 160, 140))]
    paths = [linear_path((20, 20), (300, 60), 30.0, hidden=[(9.0, 10.5)]),
             linear_path((1000, 40), (700, 90), 30.0, appears_s=6.0),
             linear_path((40, 500), (330, 420), 30.0),
             linear_path((1050, 520), (760, 430), 30.0, hidden=[(17.0, 17.6)])]
    sprites = [Sprite(lambda t, f=f: f, p) for f, p in zip(faces, paths)]
    clip = tmp_path / "four.mp4"
    write_clip(clip, sprites, size=(1280, 720), fps=25, duration_s=30.0)
    timelines = []
    for video in (True, False):
        out = tmp_path / f"video-{video}"
        outcome = analyze_input(clip, out / "four", AnalyzeConfig(sample_fps=2.5, video=video, device="cpu"), models)
        assert outcome.ok, outcome.error
        assert (out / "four" / "annotated.mp4").is_file() == video
        timelines.append(pd.read_parquet(out / "four" / "timeline.parquet"))
    assert len(timelines[0]) > 200
    pd.testing.assert_frame_equal(timelines[0], timelines[1])


def test_the_annotated_video_keeps_a_paused_recordings_duration_and_sync(tmp_path, ffmpeg, tiny_model):
    """Frames stop for 30 s (a paused recording; the audio runs on): the annotated video holds the picture."""
    source = tmp_path / "paused.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=4", "-f", "lavfi",
                    "-i", "sine=duration=34", "-vf", "setpts='if(gte(N,20),PTS+30/TB,PTS)'", "-fps_mode", "passthrough",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(source)], check=True)
    done = cli("analyze", source, "-o", tmp_path / "out", "--model", tiny_model)
    assert done.returncode == 0, done.stderr[-2000:]
    from emotiontrack.media.tools import ffprobe_path

    def durations(path):
        out = subprocess.run([ffprobe_path(), "-v", "error", "-show_entries", "stream=duration", "-of", "csv=p=0",
                              str(path)], capture_output=True, text=True, check=True).stdout.split()
        return [float(d) for d in out]

    video, audio = durations(tmp_path / "out" / "paused" / "annotated.mp4")
    assert abs(video - 34.0) <= 0.25 and abs(audio - 34.0) <= 0.25


def test_odd_names_and_numbers(tmp_path, two_face_clip, tiny_model):
    """A Latin-1 file name, a 245-character name, and --fps inf."""
    path, _ = two_face_clip
    latin1 = tmp_path / os.fsdecode(b"caf\xe9.mp4")
    latin1.write_bytes(path.read_bytes())
    long_name = tmp_path / ("x" * 245 + ".mp4")
    long_name.write_bytes(path.read_bytes())
    done = cli("analyze", latin1, long_name, "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert "caf\\xe9" in names and any(n.startswith("xxx") and len(n.encode()) <= 200 for n in names)
    assert pd.read_parquet(tmp_path / "out" / "caf\\xe9" / "timeline.parquet").video.iloc[0].endswith("caf\\xe9.mp4")
    bad = cli("analyze", path, "-o", tmp_path / "out2", "--fps", "inf")
    assert bad.returncode == 2 and "--fps: must be a finite number" in bad.stderr and "Traceback" not in bad.stderr


def test_a_float_tiff_is_not_read_black(tmp_path):
    from emotiontrack.media.stills import read_image

    ramp = np.linspace(0, 1, 64 * 32, dtype=np.float32).reshape(32, 64)
    Image.fromarray(ramp, mode="F").save(tmp_path / "ramp.tif")
    image = read_image(tmp_path / "ramp.tif")
    assert image.shape == (32, 64, 3) and image.max() >= 250 and image.min() <= 5


@pytest.mark.parametrize(("signal_name", "delay_s"),
                         [("SIGINT", 0.05), ("SIGINT", 0.3), ("SIGINT", 1.0), ("SIGTERM", 0.3)])
def test_a_signal_while_starting_is_a_quiet_exit(tmp_path, two_face_clip, signal_name, delay_s):
    import signal
    import time

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([*cli_prefix(), "analyze", str(two_face_clip[0]), "-o", str(tmp_path / "out")],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay_s)
    proc.send_signal(getattr(signal, signal_name))
    _, stderr = proc.communicate(timeout=60)
    status, word = (130, "interrupted") if signal_name == "SIGINT" else (143, "terminated")
    assert proc.returncode == status and "Traceback" not in stderr and word in stderr
    assert not leftovers(tmp_path) and not list(scratch.iterdir())


def test_a_run_that_cannot_start_leaves_nothing_in_tmpdir(tmp_path, two_face_clip):
    """The scratch folder (s3:// downloads and staging) is made only once the run writes: a bad model or an
    unwritable output folder leaves nothing behind."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    bad_model = cli("analyze", two_face_clip[0], "-o", tmp_path / "out", "--model", "/nonexistent.keras", env=env)
    assert bad_model.returncode == 1 and "not found" in bad_model.stderr
    assert len(bad_model.stderr.strip().splitlines()) == 1
    blocker = tmp_path / "a file"
    blocker.write_text("")
    unwritable = cli("analyze", two_face_clip[0], "-o", blocker / "out", env=env)
    assert unwritable.returncode == 1 and "cannot write to output folder" in unwritable.stderr
    assert not list(scratch.iterdir())


def test_a_run_started_with_ctrl_c_ignored_runs_through_it(tmp_path, two_face_clip, tiny_model):
    """A shell script's background job ignores SIGINT: the run must too, while starting and while it writes."""
    import signal
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen([*cli_prefix(), "analyze", str(two_face_clip[0]), "-o", str(out), "--model",
                             str(tiny_model), "--fps", "0"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # while starting
    deadline = time.monotonic() + 120
    while not list(out.glob(".*.partial-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # while writing (or, on a fast machine, just after)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert (out / "two faces" / "timeline.parquet").is_file() and not leftovers(out)


def test_an_animated_gif_is_a_video_and_an_anamorphic_video_keeps_its_aspect(tmp_path, ffmpeg, tiny_model):
    gif = tmp_path / "anim.gif"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=5:duration=2", str(gif)], check=True)
    anamorphic = tmp_path / "dv.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=2", "-vf",
                    "setsar=16/11", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(anamorphic)], check=True)
    done = cli("analyze", gif, anamorphic, "-o", tmp_path / "out", "--model", tiny_model)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_metadata(tmp_path / "out" / "anim" / "timeline.parquet")["decoded_frames"] == "10"
    from emotiontrack.media.tools import ffprobe_path

    sar = subprocess.run([ffprobe_path(), "-v", "error", "-show_entries", "stream=sample_aspect_ratio", "-of", "csv=p=0",
                          str(tmp_path / "out" / "dv" / "annotated.mp4")], capture_output=True, text=True, check=True)
    assert sar.stdout.strip() == "16:11"


@pytest.mark.timeout(600)
def test_fuzzed_container_metadata_always_ends_cleanly(tmp_path, ffmpeg, tiny_model):
    """Random display matrices, dispositions, stream orders and timestamp jumps (a fixed seed, a bounded
    budget): every input ends in a clean outcome, and every success decoded every frame of the stream it chose."""
    rng = np.random.default_rng(19)
    base = tmp_path / "base.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=2", "-f", "lavfi",
                    "-i", "testsrc2=size=256x144:rate=15:duration=2", "-f", "lavfi", "-i", "sine=duration=2", "-map", "0",
                    "-map", "1", "-map", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(base)], check=True)
    inputs = []
    for i in range(8):
        out = tmp_path / f"fuzz{i}.{rng.choice(['mp4', 'mkv', 'mov'])}"
        args = [ffmpeg, "-v", "error"]
        rotation = float(rng.choice([0, 90, 180, 270, 45, -30, 135.5]))
        args += ["-display_rotation:v:0", str(rotation), "-i", str(base)]
        order = rng.permutation(3)
        for k in order:
            args += ["-map", f"0:{k}"]
        args += ["-c", "copy"]
        for k in range(2):
            args += [f"-disposition:v:{k}", str(rng.choice(["default", "0"]))]
        if rng.random() < 0.5:
            args += ["-output_ts_offset", str(float(rng.uniform(0, 100)))]
        subprocess.run([*args, str(out)], check=True)
        inputs.append(out)
    done = cli("analyze", *inputs, "-o", tmp_path / "out", "--model", tiny_model, "--no-video", timeout=600)
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not leftovers(tmp_path / "out")
    for path in inputs:
        timeline = tmp_path / "out" / path.stem / "timeline.parquet"
        if timeline.is_file():
            meta = read_metadata(timeline)
            assert int(meta["decoded_frames"]) in (20, 30), (path, meta["decoded_frames"])
        else:
            assert f"{path}:" in done.stderr  # a failure is named in one line


def test_results_written_into_the_input_folder_itself_still_resume(tmp_path, tiny_model):
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path / "stills"
    folder.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(folder / "a.png")
    assert cli("analyze", folder, "-o", folder, "--model", tiny_model).returncode == 0
    again = cli("analyze", folder, "-o", folder, "--model", tiny_model)
    assert again.returncode == 0 and "already complete" in again.stderr
