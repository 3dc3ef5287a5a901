"""Real decoding of clips that ffmpeg generates (lavfi sources) and of image folders."""

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotiontrack.errors import InputError
from emotiontrack.media.decode import VideoReader
from emotiontrack.media.frames import FrameSampler
from emotiontrack.media.probe import probe
from emotiontrack.media.stills import image_frames


def lavfi(ffmpeg: str, path: Path, source: str, *args: str) -> Path:
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", source, *args, str(path)], check=True)
    return path


def decode_all(path: Path):
    info = probe(path)
    with VideoReader(info) as reader:
        return info, list(reader)


def test_frames_carry_source_index_and_presentation_time(ffmpeg, tmp_path):
    clip = lavfi(ffmpeg, tmp_path / "a.mp4", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    info, frames = decode_all(clip)
    assert (info.width, info.height, info.fps) == (320, 240, Fraction(25))
    assert [f.index for f in frames] == list(range(50))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(50) / 25, atol=1e-3)
    assert frames[0].rgb.shape == (240, 320, 3) and frames[0].rgb.dtype == np.uint8


def test_colours_come_out_rgb(ffmpeg, tmp_path):
    clip = lavfi(ffmpeg, tmp_path / "red.mp4", "color=c=red:size=64x64:rate=5:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv444p")
    _, frames = decode_all(clip)
    r, g, b = frames[0].rgb[32, 32].astype(int)
    assert r > 200 and g < 40 and b < 40


def test_ntsc_rate_is_an_exact_fraction(ffmpeg, tmp_path):
    clip = lavfi(ffmpeg, tmp_path / "ntsc.mp4", "testsrc2=size=160x120:rate=30000/1001:duration=1", "-c:v", "libx264")
    info, frames = decode_all(clip)
    assert info.fps == Fraction(30000, 1001)
    assert frames[-1].time_s == pytest.approx((len(frames) - 1) * 1001 / 30000, abs=1e-3)


def test_variable_frame_rate_keeps_true_times(ffmpeg, tmp_path):
    # 25 frames at 25 fps, then frames every 0.1 s: times must follow the timestamps, not the index.
    clip = lavfi(ffmpeg, tmp_path / "vfr.mkv", "testsrc2=size=160x120:rate=25:duration=2",
                 "-vf", "settb=1/1000,setpts='if(lt(N,25),N/25,1+(N-25)/10)/TB'", "-fps_mode", "passthrough", "-enc_time_base", "1/1000", "-c:v", "libx264")
    _, frames = decode_all(clip)
    times = np.array([f.time_s for f in frames])
    np.testing.assert_allclose(times[:25], np.arange(25) / 25, atol=2e-3)
    np.testing.assert_allclose(times[25:30], 1 + np.arange(5) / 10, atol=2e-3)


def test_sampling_in_ffmpeg_takes_the_frames_the_sampler_takes(ffmpeg, tmp_path):
    """With sample_fps, ffmpeg's select filter drops frames before the pipe: the frames that come out (index,
    time, pixels) must be exactly those FrameSampler picks from all frames, also at NTSC and variable rates."""
    ntsc = lavfi(ffmpeg, tmp_path / "ntsc.mp4", "testsrc2=size=160x120:rate=30000/1001:duration=4", "-c:v", "libx264")
    vfr = lavfi(ffmpeg, tmp_path / "vfr.mkv", "testsrc2=size=160x120:rate=25:duration=4",
                "-vf", "settb=1/1000,setpts='if(lt(N,25),N/25,1+(N-25)/7)/TB'", "-fps_mode", "passthrough",
                "-enc_time_base", "1/1000", "-c:v", "libx264")
    for clip, fps in ((ntsc, 2.0), (ntsc, 7.0), (vfr, 3.0)):
        info, every = decode_all(clip)
        sampler = FrameSampler(fps)
        expected = [f for f in every if sampler.take(f.time_s)]
        with VideoReader(info, sample_fps=fps) as reader:
            sampled = list(reader)
        assert reader.frames_read == len(every)
        assert [(f.index, f.time_s) for f in sampled] == [(f.index, f.time_s) for f in expected]
        assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(sampled, expected))


def test_rotation_metadata_is_honoured(ffmpeg, tmp_path):
    plain = lavfi(ffmpeg, tmp_path / "plain.mp4", "testsrc2=size=320x240:rate=10:duration=1", "-c:v", "libx264")
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated)], check=True)
    info, frames = decode_all(rotated)
    assert info.rotation in (90, 270) and (info.width, info.height) == (240, 320)
    assert frames[0].rgb.shape == (320, 240, 3)


@pytest.mark.parametrize(
    "name,args",
    [
        ("part2.avi", ["-c:v", "mpeg4", "-c:a", "ac3"]),
        ("vp9.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus"]),
        ("mjpeg.mov", ["-c:v", "mjpeg", "-c:a", "pcm_s16le"]),
        ("stream.ts", ["-c:v", "libx264", "-c:a", "mp2"]),
    ],
)
def test_containers_and_codecs(ffmpeg, tmp_path, name, args):
    clip = tmp_path / name
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=720x528:rate=24000/1001:duration=1",
                    "-f", "lavfi", "-i", "sine=duration=1", *args, "-shortest", str(clip)], check=True)
    info, frames = decode_all(clip)
    assert (info.width, info.height) == (720, 528)
    assert info.audio_codec is not None
    assert 22 <= len(frames) <= 25
    assert all(b.time_s > a.time_s for a, b in zip(frames, frames[1:]))
    assert frames[-1].time_s < 1.0 + 1e-6


def test_sampler_takes_first_frame_of_each_slot():
    sampler = FrameSampler(5)
    taken = [i for i in range(50) if sampler.take(i / 25)]
    assert taken == list(range(0, 50, 5))
    every = FrameSampler(0)
    assert all(every.take(i / 25) for i in range(10))


def test_sampler_on_uneven_times():
    sampler = FrameSampler(2)
    times = [0.0, 0.1, 0.45, 0.52, 0.9, 1.7, 1.71, 2.2]
    assert [t for t in times if sampler.take(t)] == [0.0, 0.52, 1.7, 2.2]


def test_image_folder_reads_every_kind_of_still_in_name_order(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "b_rgb.png")
    Image.fromarray(rng.integers(0, 255, (50, 30), dtype=np.uint8)).save(tmp_path / "a_gray.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8), "RGBA").save(tmp_path / "c_rgba.png")
    Image.new("CMYK", (32, 16), (0, 255, 255, 0)).save(tmp_path / "d_cmyk.jpg")
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(tmp_path / "e_16bit.png")
    (tmp_path / "notes.txt").write_text("not an image")
    info = probe(tmp_path)
    assert info.is_stills and info.n_frames == 5
    frames = list(image_frames(info))
    assert [f.name for f in frames] == ["a_gray.jpg", "b_rgb.png", "c_rgba.png", "d_cmyk.jpg", "e_16bit.png"]
    assert [f.rgb.shape for f in frames] == [(50, 30, 3), (40, 60, 3), (20, 20, 3), (16, 32, 3), (64, 64, 3)]
    assert all(f.rgb.dtype == np.uint8 and math.isnan(f.time_s) for f in frames)
    red = frames[3].rgb[8, 16]
    assert red[0] > 200 and red[1] < 60  # CMYK (0, 255, 255, 0) is red
    assert frames[4].rgb.max() > 200  # 16-bit values scaled, not clipped to white


def test_missing_and_empty_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="no images"):
        probe(tmp_path / "folder")
