"""`analyze --engine ray` on a local Ray cluster started once for these tests (2 CPUs, small object store)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli as plain_cli
from conftest import leftovers, s3_keys, s3_parquet

pytest.importorskip("ray")
pytestmark = pytest.mark.ray


# Token authentication, with a token of these tests' own: without one, `ray start` decides by whether
# ~/.ray/auth_token exists, and a driver given an address must be told.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


def cli(*args, **kwargs):
    return plain_cli(*args, env=RAY_ENV, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    """A Ray head on 127.0.0.1, stopped (with everything it started) when the tests are done."""
    port = _free_port()
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                             "--object-store-memory", str(100 * 2**20), "--include-dashboard", "false",
                             "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **RAY_ENV})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    else:
        head.kill()
        pytest.fail("the Ray head did not start")
    yield f"127.0.0.1:{port}"
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


def _results(out: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    folder = out / name
    manifest = json.loads((folder / "manifest.json").read_text())
    return pd.read_parquet(folder / "timeline.parquet"), pd.read_parquet(folder / "faces.parquet"), manifest["files"]


def _same_results(a: Path, b: Path, name: str) -> None:
    timeline_a, faces_a, files_a = _results(a, name)
    timeline_b, faces_b, files_b = _results(b, name)
    pd.testing.assert_frame_equal(timeline_a, timeline_b)
    pd.testing.assert_frame_equal(faces_a, faces_b)
    assert files_a == files_b


@pytest.fixture(scope="module")
def batch(tmp_path_factory, two_face_clip) -> list[Path]:
    """A good clip, a broken file, and two clips with the same stem in different folders."""
    root = tmp_path_factory.mktemp("batch")
    (root / "a").mkdir()
    (root / "b").mkdir()
    broken = root / "broken.mp4"
    broken.write_bytes(b"not a video")
    same_a, same_b = root / "a" / "clip.mp4", root / "b" / "clip.mp4"
    same_a.symlink_to(two_face_clip[0])
    same_b.write_bytes(two_face_clip[0].read_bytes())
    return [two_face_clip[0], broken, same_a, same_b]


def test_a_mixed_batch_on_ray_equals_the_local_run(tmp_path, batch, tiny_model, ray_address):
    local = cli("analyze", *batch, "-o", tmp_path / "local", "--model", tiny_model)
    on_ray = cli("analyze", *batch, "-o", tmp_path / "ray", "--model", tiny_model, "--engine", "ray",
                 "--ray-address", ray_address, "--workers", "2")
    assert local.returncode == on_ray.returncode == 1, on_ray.stderr
    assert "Traceback" not in on_ray.stderr
    failure = [line for line in on_ray.stderr.splitlines() if line.startswith("failed:")]
    assert failure == [line for line in local.stderr.splitlines() if line.startswith("failed:")]
    assert len(failure) == 1 and "broken.mp4: not a readable video" in failure[0]
    names = sorted(p.name for p in (tmp_path / "local").iterdir() if p.is_dir())
    assert names == sorted(p.name for p in (tmp_path / "ray").iterdir() if p.is_dir()) and len(names) == 3
    for name in names:
        _same_results(tmp_path / "local", tmp_path / "ray", name)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "summary.parquet"),
                                  pd.read_parquet(tmp_path / "ray" / "summary.parquet"))
    assert (tmp_path / "ray" / "overview.png").is_file() and (tmp_path / "ray" / "index.html").is_file()
    assert not leftovers(tmp_path)


def test_results_are_skipped_across_engines(tmp_path, two_face_clip, tiny_model, ray_address):
    out = tmp_path / "out"
    assert cli("analyze", two_face_clip[0], "-o", out, "--model", tiny_model, "--no-video").returncode == 0
    again = cli("analyze", two_face_clip[0], "-o", out, "--model", tiny_model, "--no-video", "--engine", "ray",
                "--ray-address", ray_address)
    assert again.returncode == 0 and "already complete" in again.stderr
    other = tmp_path / "other"
    assert cli("analyze", two_face_clip[0], "-o", other, "--model", tiny_model, "--no-video", "--engine", "ray",
               "--ray-address", ray_address).returncode == 0
    local = cli("analyze", two_face_clip[0], "-o", other, "--model", tiny_model, "--no-video")
    assert local.returncode == 0 and "already complete" in local.stderr


def _worker_pids(title: str) -> list[int]:
    """Processes whose title (Ray sets it: "ray::AnalysisWorker.analyze") contains `title`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and title in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _wait_for(condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _start(args: list, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emotiontrack.cli", "analyze", *map(str, args), "-o", str(out)],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200", **RAY_ENV})


def test_a_worker_killed_mid_input_is_retried_and_changes_nothing(tmp_path, two_face_clip, tiny_model, ray_address):
    args = [two_face_clip[0], "--model", tiny_model, "--fps", "0"]
    assert cli("analyze", *args, "-o", tmp_path / "local").returncode == 0
    out = tmp_path / "ray"
    proc = _start([*args, "--engine", "ray", "--ray-address", ray_address], out)
    _wait_for(lambda: any(".partial-" in p.name for p in out.glob(".*")) and _worker_pids("AnalysisWorker.analyze"))
    for pid in _worker_pids("AnalysisWorker.analyze"):
        os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    _same_results(tmp_path / "local", out, two_face_clip[0].stem)
    assert not leftovers(out)


def test_sigterm_on_the_driver_leaves_nothing_and_a_rerun_completes(tmp_path, two_face_clip, tiny_model, ray_address):
    args = [two_face_clip[0], "--model", tiny_model, "--fps", "0", "--engine", "ray", "--ray-address", ray_address]
    out = tmp_path / "out"
    proc = _start(args, out)
    _wait_for(lambda: any(".partial-" in p.name for p in out.glob(".*")))
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    assert not leftovers(out) and not (out / two_face_clip[0].stem).exists()
    _wait_for(lambda: not _worker_pids("AnalysisWorker"), 30)  # the workers, and their ffmpeg, are gone
    assert cli(*["analyze", *args, "-o", out]).returncode == 0
    assert (out / two_face_clip[0].stem / "manifest.json").is_file()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """16 s, two faces crossing the frame: 4 segments of 4 s."""
    from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

    a, b = astronaut_face(150), astronaut_face(130, mirrored=True)
    sprites = [Sprite(lambda t: a, linear_path((10, 20), (400, 60), 16.0), "a"),
               Sprite(lambda t: b, linear_path((470, 190), (120, 180), 16.0), "b")]
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_clip(path, sprites, size=(640, 360), fps=25, duration_s=16.0, audio=False)
    return path


def test_segments_stitch_into_the_single_pass_timeline(tmp_path, long_clip, ray_address):
    one = cli("analyze", long_clip, "-o", tmp_path / "one", "--no-video")
    segmented = cli("analyze", long_clip, "-o", tmp_path / "seg", "--no-video", "--engine", "ray",
                    "--ray-address", ray_address, "--segment-s", "4")
    assert one.returncode == segmented.returncode == 0, segmented.stderr
    a = pd.read_parquet(tmp_path / "one" / "long" / "timeline.parquet")
    b = pd.read_parquet(tmp_path / "seg" / "long" / "timeline.parquet")
    assert b.face_id.nunique() == a.face_id.nunique() == 2
    from emotiontrack.outputs.timeline import read_metadata

    assert json.loads(read_metadata(tmp_path / "seg" / "long" / "timeline.parquet")["settings"])["segment_s"] == 4.0
    # Rows of the same face in the same frame: the ids may be numbered differently, the boxes agree.
    matched = a.merge(b, on="frame", suffixes=("_a", "_b"))
    matched = matched[(matched.x1_a - matched.x1_b).abs() + (matched.y1_a - matched.y1_b).abs() < 20]
    assert len(matched) >= 0.98 * len(a) and matched.time_s_a.equals(matched.time_s_b)
    assert matched.groupby("face_id_a").face_id_b.nunique().max() == 1  # no id switch at a segment boundary
    assert (matched.emotion_a == matched.emotion_b).mean() >= 0.99
    assert not leftovers(tmp_path)


def test_segments_need_the_ray_engine_and_no_video(tmp_path, long_clip):
    done = plain_cli("analyze", long_clip, "-o", tmp_path / "out", "--segment-s", "4")
    assert done.returncode == 2 and "--segment-s needs --engine ray and --no-video" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_an_address_where_no_ray_listens_fails_in_one_line(tmp_path, two_face_clip, address):
    address = address.format(port=_free_port())
    started = time.monotonic()
    done = plain_cli("analyze", two_face_clip[0], "-o", tmp_path / "out", "--engine", "ray", "--ray-address", address,
                     timeout=120)
    assert done.returncode == 1 and f"cannot join Ray at {address}: connection refused" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()


def test_a_local_ray_that_will_not_start_is_tried_twice_then_one_line_with_a_hint(tmp_path, two_face_clip, tiny_model):
    """Ray's own start-up can time out on a busy machine: the start is tried once more, and a second failure
    is one line that says how to start Ray once beside the runs. (Ray's session folder under a file makes
    every start fail at once.)"""
    blocker = tmp_path / "not a folder"
    blocker.write_text("")
    done = plain_cli("analyze", two_face_clip[0], "-o", tmp_path / "out", "--engine", "ray", "--model", tiny_model,
                     env={**RAY_ENV, "RAY_TMPDIR": str(blocker)}, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "trying once more" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "cannot start or join Ray (local)" in last and "ray start --head" in last and "--ray-address auto" in last
    assert not leftovers(tmp_path)


def test_ray_workers_publish_to_s3(tmp_path, batch, tiny_model, ray_address, s3_env):
    good = [batch[0], batch[2]]
    local = cli("analyze", *good, "-o", tmp_path / "local", "--model", tiny_model, "--no-video")
    on_ray = plain_cli("analyze", *good, "-o", "s3://results/ray", "--model", tiny_model, "--no-video",
                       "--engine", "ray", "--ray-address", ray_address, "--workers", "2", env={**RAY_ENV, **s3_env})
    assert local.returncode == on_ray.returncode == 0, on_ray.stderr
    names = sorted(p.name for p in (tmp_path / "local").iterdir() if p.is_dir())
    assert {f"{name}/manifest.json" for name in names} | {"summary.parquet", "index.html"} <= s3_keys(s3_env, "ray/")
    for name in names:
        pd.testing.assert_frame_equal(s3_parquet(s3_env, f"ray/{name}/timeline.parquet"),
                                      pd.read_parquet(tmp_path / "local" / name / "timeline.parquet"))


def test_ray_workers_download_s3_inputs(tmp_path, two_face_clip, tiny_model, ray_address, s3_env):
    from conftest import s3_client

    s3_client(s3_env).upload_file(str(two_face_clip[0]), "results", "inputs/ray-input.mp4")
    uri = "s3://results/inputs/ray-input.mp4"
    done = plain_cli("analyze", uri, "-o", tmp_path / "out", "--model", tiny_model, "--no-video", "--engine", "ray",
                     "--ray-address", ray_address, env={**RAY_ENV, **s3_env})
    assert done.returncode == 0, done.stderr
    assert set(pd.read_parquet(tmp_path / "out" / "ray-input" / "timeline.parquet").video) == {uri}
