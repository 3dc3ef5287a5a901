"""Live sources: a local streamer sends a generated clip as MPEG-TS over UDP in real time, as an encoder would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import cli, leftovers

from emotiontrack.config import LiveOptions
from emotiontrack.media.live import LiveReader
from emotiontrack.media.sources import is_live, live_name


@pytest.fixture(scope="module")
def live_clip(tmp_path_factory) -> Path:
    """8 s of 640x360 at 25 fps, a keyframe every second: two astronaut faces moving apart."""
    from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

    a, b = astronaut_face(170), astronaut_face(150, mirrored=True)
    sprites = [Sprite(lambda t: a, linear_path((20, 30), (250, 40), 8.0), "a"),
               Sprite(lambda t: b, linear_path((450, 180), (230, 170), 8.0), "b")]
    path = tmp_path_factory.mktemp("live") / "clip.mp4"
    write_clip(path, sprites, size=(640, 360), fps=25, duration_s=8.0)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream(ffmpeg: str, clip: Path, port: int, loops: int = 0) -> subprocess.Popen:
    """The clip sent in real time, `loops` extra times, as MPEG-TS over UDP (keyframes every second)."""
    return subprocess.Popen([ffmpeg, "-loglevel", "error", "-re", "-stream_loop", str(loops), "-i", str(clip),
                             "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-f", "mpegts",
                             f"udp://127.0.0.1:{port}?pkt_size=1316"])


def capture(port: int, out: Path, *options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emotiontrack.cli", "analyze", f"udp://127.0.0.1:{port}", "-o",
                             str(out), *map(str, options)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def metadata(path: Path) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}


def test_live_inputs_are_told_from_files_and_named_after_their_address():
    assert all(map(is_live, ["udp://127.0.0.1:23000", "RTSP://cam/stream", "srt://host:9000?mode=listener",
                             "https://host/live.m3u8", "rtmp://host/app/key", "/dev/video0"]))
    assert not any(map(is_live, ["clip.mp4", "s3://bucket/clip.mp4", "folder/udp.mp4", "file://clip.mp4"]))
    assert live_name("udp://127.0.0.1:23000") == "udp-127.0.0.1-23000"
    assert live_name("rtsp://user@cam.local:554/stream1?token=x") == "rtsp-user-cam.local-554-stream1"


def test_a_stream_that_ends_is_published_with_its_parts(tmp_path, live_clip, ffmpeg, tiny_model):
    """The sender stops mid-way through a capture that has no end of its own: after --stall-s without video
    the capture ends and is published like a file's result, with the parts that were readable meanwhile."""
    port, out = free_port(), tmp_path / "out"
    proc = capture(port, out, "--model", tiny_model, "--stall-s", 3, "--flush-s", 1)
    time.sleep(1.5)
    sender = stream(ffmpeg, live_clip, port)
    folder = out / f"udp-127.0.0.1-{port}"
    seen_while_running = None
    deadline = time.monotonic() + 60
    while sender.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        if seen_while_running is None and list((folder / "live").glob("part-*.parquet")):
            seen_while_running = pd.read_parquet(folder / "live")
    time.sleep(2.0)  # the stream has ended; the capture waits --stall-s (3 s) for more
    # ffmpeg holds an MPEG-TS stream's last packets until more come or it ends: rows up to ~1.5 s before the end
    assert proc.poll() is None and pd.read_parquet(folder / "live").time_s.max() > 5.0
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert seen_while_running is not None  # rows were readable before the stream ended
    timeline = pd.read_parquet(folder / "timeline.parquet")
    # the last ~1 s of a stream that stops may stay in ffmpeg, stopped from outside after --stall-s
    assert timeline.face_id.nunique() >= 2 and timeline.time_s.max() > 5.0
    facts = metadata(folder / "timeline.parquet")
    live = json.loads(facts["live"])
    assert live["ended_by"] == "no video for 3 s" and facts["source"] == f"udp://127.0.0.1:{port}"
    assert facts["started_at"].endswith("+00:00") and live["latency_s"]["p50"] is not None
    parts = pd.read_parquet(folder / "live")  # one table, every analysed row of the capture
    assert len(parts) == len(timeline) and set(parts.columns) <= set(timeline.columns)
    assert (folder / "annotated.mp4").is_file() and not leftovers(out)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_the_first_signal_stops_and_publishes_the_second_aborts(tmp_path, live_clip, ffmpeg, tiny_model, signal_name):
    port = free_port()
    sender = stream(ffmpeg, live_clip, port, loops=10)
    try:
        out = tmp_path / "stopped"
        proc = capture(port, out, "--model", tiny_model, "--no-video")
        time.sleep(12)
        proc.send_signal(getattr(signal, signal_name))
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        folder = out / f"udp-127.0.0.1-{port}"
        assert json.loads(metadata(folder / "timeline.parquet")["live"])["ended_by"] == "stopped"
        assert len(pd.read_parquet(folder / "timeline.parquet")) > 0 and not (folder / "annotated.mp4").exists()

        out = tmp_path / "aborted"
        proc = capture(port, out, "--model", tiny_model)
        time.sleep(10)
        proc.send_signal(getattr(signal, signal_name))
        time.sleep(0.3)
        proc.send_signal(getattr(signal, signal_name))
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == (130 if signal_name == "SIGINT" else 143), stderr
        assert "Traceback" not in stderr and not [p for p in out.rglob("*") if p.name != "index.html"]
    finally:
        sender.kill()


def test_duration_ends_the_capture_and_reconnect_goes_on_after_a_drop(tmp_path, live_clip, ffmpeg, tiny_model):
    """With --reconnect the sender stops for 4 s and comes back: one timeline, its time going on across the
    drop (a new shot), until --duration seconds of video."""
    port, out = free_port(), tmp_path / "out"
    proc = capture(port, out, "--model", tiny_model, "--no-video", "--reconnect", "--stall-s", 2, "--duration", 16)
    try:
        time.sleep(1.5)
        stream(ffmpeg, live_clip, port).wait()
        time.sleep(4)
        stream(ffmpeg, live_clip, port).wait()
        _, stderr = proc.communicate(timeout=60)
    finally:  # a capture that reconnects waits for ever: never leave one behind
        proc.kill()
    assert proc.returncode == 0, stderr
    path = out / f"udp-127.0.0.1-{port}" / "timeline.parquet"
    live = json.loads(metadata(path)["live"])
    assert live["reconnects"] >= 1 and live["ended_by"] == "duration"
    times = pd.read_parquet(path).time_s
    assert 13 < times.max() < 16 and times.is_monotonic_increasing
    cuts = json.loads(metadata(path)["cuts_s"])
    assert any(8 < cut < 16 for cut in cuts), cuts  # the drop is a cut: after the first stream, at the second one's first frame


def test_no_video_is_one_line_and_leaves_nothing(tmp_path, tiny_model):
    out = tmp_path / "out"
    result = cli("analyze", f"udp://127.0.0.1:{free_port()}", "-o", out, "--model", tiny_model, "--wait-s", 2)
    assert result.returncode == 1 and "no video for 2 s" in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in out.rglob("*") if p.name != "index.html"]


def test_live_and_file_inputs_do_not_mix(tmp_path, live_clip):
    mixed = cli("analyze", "udp://127.0.0.1:23000", live_clip, "-o", tmp_path / "out")
    assert mixed.returncode == 2 and "captured alone" in mixed.stderr and len(mixed.stderr.strip().splitlines()) == 1
    named = cli("analyze", live_clip, "--name", "x", "-o", tmp_path / "out")
    assert named.returncode == 2 and "--name" in named.stderr
    ray = cli("analyze", "udp://127.0.0.1:23000", "--engine", "ray", "-o", tmp_path / "out")
    assert ray.returncode == 2 and "--engine ray" in ray.stderr
    (tmp_path / "out" / "udp-127.0.0.1-23000").mkdir(parents=True)
    taken = cli("analyze", "udp://127.0.0.1:23000", "-o", tmp_path / "out")
    assert taken.returncode == 2 and "--overwrite" in taken.stderr


def test_a_slow_analysis_skips_frames_instead_of_queueing_them(live_clip, ffmpeg):
    """The consumer takes 1 s per frame of a 2-fps sampling: the reader never blocks ffmpeg, keeps at most
    lag_s seconds of video waiting, and counts the analysed frames it skipped."""
    port = free_port()
    options = LiveOptions(stall_s=2, lag_s=1.0)
    with LiveReader(f"udp://127.0.0.1:{port}", "x", options, sample_fps=2.0, keep_all=False) as reader:
        sender = stream(ffmpeg, live_clip, port)
        info = reader.info()
        assert (info.width, info.height) == (640, 360) and info.is_live
        waits, times = [], []
        for frame, analysed in reader:
            assert analysed and frame.pixels.shape == (540, 640)
            waits.append(time.monotonic() - frame.arrived_s)
            times.append(frame.time_s)
            time.sleep(1.0)
        sender.wait()
    assert reader.skipped >= 4 and len(times) + reader.skipped >= 14
    assert max(waits[1:]) < options.lag_s + 0.6  # nothing waits much longer than lag_s (the newest frame is kept)
    assert np.all(np.diff(times) > 0) and reader.frames_read >= 190


def test_parts_are_written_when_due_even_when_no_frame_comes(tmp_path):
    """The rows of the last frames before a stream stalls reach a part within --flush-s, not at the end."""
    from emotiontrack.outputs.parts import LiveParts
    from emotiontrack.types import Faces, Frame

    parts = LiveParts(tmp_path / "live", "udp://x", 0.3, lambda: {"started_at": "2026-12-07T00:00:00+00:00"})
    try:
        assert not list((tmp_path / "live").glob("*.parquet"))
        box = np.array([[10, 10, 60, 60]], np.float64)
        faces = Faces.from_boxes(0, 0.0, box, np.array([0.9]), np.zeros((1, 5, 2)))
        parts.push(Frame(0, 0.0, np.zeros((4, 4, 3), np.uint8), arrived_s=time.monotonic()), faces)
        time.sleep(1.0)  # no more frames
        table = pd.read_parquet(tmp_path / "live")
        assert len(table) == 1 and parts.parts == 1 and parts.written_latency_s[0] < 0.9
        assert metadata(next((tmp_path / "live").glob("part-*.parquet")))["started_at"].startswith("2026-12-07")
    finally:
        parts.close()
    assert parts.parts == 1  # nothing new: no empty part at the end
