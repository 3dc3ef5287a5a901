"""What analysts open: the annotated video (with audio), per-face summaries, charts, reports, smoothing."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from emotiontrack.outputs.smooth import smooth_track
from emotiontrack.types import EMOTIONS


def ffprobe(path) -> dict:
    from emotiontrack.media.tools import ffprobe_path

    args = [ffprobe_path(), "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)]
    return json.loads(subprocess.run(args, capture_output=True, check=True).stdout)


def read_frame(path, index: int, size) -> np.ndarray:
    from emotiontrack.media.tools import ffmpeg_path

    raw = subprocess.run([ffmpeg_path(), "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{index})", "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3)


@pytest.fixture(scope="module")
def run(two_face_clip, tiny_model, tmp_path_factory, ffmpeg):
    """One CLI run over a clip with AAC audio, a silent clip and a clip with PCM audio (not mp4-ready)."""
    clip, _ = two_face_clip
    folder = tmp_path_factory.mktemp("outputs")
    silent = folder / "silent.mkv"
    pcm = folder / "pcm.mov"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(clip), "-an", "-c:v", "copy", str(silent)], check=True)
    subprocess.run([ffmpeg, "-v", "error", "-i", str(clip), "-c:v", "copy", "-c:a", "pcm_s16le", str(pcm)], check=True)
    out = folder / "results"
    done = subprocess.run([sys.executable, "-m", "emotiontrack.cli", "analyze", str(clip), str(silent), str(pcm),
                           "-o", str(out), "--model", str(tiny_model)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out, clip, silent, pcm


def test_annotated_video_is_h264_with_the_source_frames_and_audio(run):
    out, clip, silent, pcm = run
    source = ffprobe(clip)
    for name, audio in ((clip.stem, "aac"), ("silent", None), ("pcm", "aac")):
        info = ffprobe(out / name / "annotated.mp4")
        video = [s for s in info["streams"] if s["codec_type"] == "video"]
        sound = [s for s in info["streams"] if s["codec_type"] == "audio"]
        assert video[0]["codec_name"] == "h264" and video[0]["pix_fmt"] == "yuv420p"
        assert int(video[0]["nb_read_frames"]) == 100  # 4 s at 25 fps: every source frame
        assert abs(float(info["format"]["duration"]) - float(source["format"]["duration"])) <= 0.1
        assert [s["codec_name"] for s in sound] == ([audio] if audio else [])


def test_annotated_frames_carry_boxes_where_the_faces_are(run):
    out, clip, _, _ = run
    timeline = pd.read_parquet(out / clip.stem / "timeline.parquet")
    for index in (20, 31):  # at 2 fps the analysed frames are 0, 13, 25, 38, ...: these lie between them
        source, annotated = read_frame(clip, index, (640, 360)), read_frame(out / clip.stem / "annotated.mp4", index, (640, 360))
        changed = np.abs(source.astype(int) - annotated.astype(int)).max(axis=2) > 35
        ys, xs = np.nonzero(changed)
        assert len(xs) > 200  # box lines and labels were drawn
        # Each face's box, interpolated from the timeline to this frame's time, has drawn pixels along its
        # left and right edges.
        mask = np.ones_like(changed)
        for face_id, rows in timeline.groupby("face_id"):
            x1, y1, x2, y2 = (np.interp(index / 25, rows.time_s, rows[c]) for c in ("x1", "y1", "x2", "y2"))
            for x in (x1, x2):
                edge = changed[int(y1) + 4 : int(y2) - 4, max(int(x) - 4, 0) : int(x) + 4]
                assert edge.any(axis=1).mean() > 0.9, f"frame {index}, face {face_id}"
            mask[max(int(y1) - 60, 0) : int(y2) + 30, max(int(x1) - 10, 0) : int(x2) + 120] = False
        # Far from every face nothing changed but codec noise.
        assert changed[mask].mean() < 0.001


def test_per_face_summary_crops_charts_and_reports(run):
    out, clip, _, _ = run
    folder = out / clip.stem
    faces = pd.read_parquet(folder / "faces.parquet")
    timeline = pd.read_parquet(folder / "timeline.parquet")
    assert sorted(faces.face_id) == sorted(timeline.face_id.unique())
    for column in ("first_s", "last_s", "seconds_visible", "frames_analysed", "dominant_emotion",
                   *[f"mean_{e}" for e in EMOTIONS], *[f"share_{e}" for e in EMOTIONS]):
        assert column in faces.columns
    np.testing.assert_allclose(faces[[f"share_{e}" for e in EMOTIONS]].sum(axis=1), 1, atol=1e-6)
    for face in faces.itertuples():
        crop = cv2.imread(str(folder / face.crop))
        assert crop is not None and crop.shape[0] >= 100
        assert face.frames_analysed == (timeline.face_id == face.face_id).sum()
    assert all(p.stat().st_size > 5000 for p in (folder / "timeline.png", folder / "shares.png"))
    report = (folder / "report.html").read_text()
    assert "data:image/png;base64" in report and "annotated.mp4" in report and "http" not in report
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == 3 * len(faces) and summary.video.nunique() == 3
    assert (out / "overview.png").is_file() and "report.html" in (out / "index.html").read_text()


def test_smoothed_columns_follow_the_raw_ones(run):
    out, clip, _, _ = run
    timeline = pd.read_parquet(out / clip.stem / "timeline.parquet")
    smooth = timeline[[f"smooth_{e}" for e in EMOTIONS]].to_numpy()
    np.testing.assert_allclose(smooth.sum(axis=1), 1, atol=1e-5)
    assert (timeline.smooth_emotion == np.asarray(EMOTIONS)[smooth.argmax(axis=1)]).all()
    for _, rows in timeline.groupby("face_id"):
        expected = smooth_track(rows.time_s.to_numpy(), rows[list(EMOTIONS)].to_numpy(), 1.0)
        np.testing.assert_allclose(rows[[f"smooth_{e}" for e in EMOTIONS]].to_numpy(), expected, atol=1e-5)


def test_drawing_on_i420_planes_matches_drawing_on_rgb():
    """The annotated video draws straight on the decoder's I420 planes: its luma must be the RGB drawing's
    (within rounding) and its chroma the same but along antialiased edges, faces at the frame's edges and
    overlapping ones included."""
    from emotiontrack.outputs.draw import FaceAnnotator, FaceBox

    rng = np.random.default_rng(5)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (15, 15), 5)
    rgb = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)  # what the decoder gives
    boxes = [FaceBox(i, np.array(xyxy, np.float64), rng.dirichlet(np.ones(7)).astype(np.float32)) for i, xyxy in
             enumerate([(3, 1, 120, 140), (100, 60, 230, 200), (560, 290, 660, 380), (301.4, 151.7, 420.2, 290.9)])]
    annotator = FaceAnnotator()
    drawn_rgb = annotator.annotate(rgb, boxes)
    planes = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    drawn_i420 = annotator.annotate_i420(planes, 640, 360, boxes, np.empty_like(planes)).astype(int)
    expected = cv2.cvtColor(drawn_rgb, cv2.COLOR_RGB2YUV_I420).astype(int)
    assert np.abs(drawn_i420[:360] - expected[:360]).max() <= 2  # luma
    chroma = np.abs(drawn_i420[360:] - expected[360:])
    assert chroma.mean() < 1 and (chroma > 16).mean() < 0.015
    drawn = np.abs(drawn_rgb.astype(int) - rgb).sum(axis=2) > 0
    assert drawn.mean() > 0.03  # something was drawn, and far more than where the chroma differs
    assert not np.array_equal(drawn_i420, planes)


def test_smoothing_weighs_real_time_not_sample_count():
    # A burst of "happy" samples 0.05 s apart must not outweigh "sad" samples spread over the window.
    times = np.array([0.0, 0.05, 0.1, 0.15, 1.0, 1.3, 1.6, 5.0])
    probs = np.zeros((8, 7), np.float32)
    probs[:4, 3] = 1  # happy
    probs[4:, 5] = 1  # sad
    smoothed = smooth_track(times, probs, window_s=1.0)
    assert smoothed[5].argmax() == 5  # at 1.3 s: neighbours within 1 s are sad, the burst is 1.15 s away
    np.testing.assert_allclose(smoothed[7], probs[7])  # alone in its window: unchanged
    np.testing.assert_allclose(smooth_track(times, probs, 0.0), probs)


def test_no_video_and_image_folders(tiny_model, tmp_path, two_face_clip):
    from PIL import Image
    from skimage import data

    stills = tmp_path / "stills"
    stills.mkdir()
    Image.fromarray(data.astronaut()).save(stills / "a.png")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "emotiontrack.cli", "analyze", str(stills), str(two_face_clip[0]),
                           "-o", str(out), "--model", str(tiny_model), "--min-face", "40", "--no-video"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not (out / two_face_clip[0].stem / "annotated.mp4").exists()
    assert not (out / "stills" / "annotated").exists()
    done = subprocess.run([sys.executable, "-m", "emotiontrack.cli", "analyze", str(stills), "-o", str(tmp_path / "o2"),
                           "--model", str(tiny_model), "--min-face", "40"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    annotated = cv2.imread(str(tmp_path / "o2" / "stills" / "annotated" / "a.jpg"))
    assert annotated is not None and annotated.shape == (512, 512, 3)


def test_report_renders_in_a_headless_browser(run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless browser installed")
    out, clip, _, _ = run
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1200,1600", (out / clip.stem / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    image = cv2.imread(str(shot))
    assert image is not None
    assert (image.std(axis=2) > 30).mean() > 0.01  # coloured charts and crops were painted


@pytest.mark.timeout(120)
def test_aborting_the_video_while_ffmpeg_stalls_ends_the_drawing_thread_first(two_face_clip, tmp_path, monkeypatch):
    """An encoder that stops reading (a stalled disk, a stopped process) blocks the drawing thread in a pipe
    write: `abort` must end that thread (by killing ffmpeg) before it touches the encoder and the frames, and
    must not hang."""
    import os
    import signal
    import threading
    import time

    from emotiontrack.media.probe import probe
    from emotiontrack.outputs import video
    from emotiontrack.types import Faces, Frame

    monkeypatch.setattr(video, "ABORT_WAIT_S", 0.5)
    info = probe(two_face_clip[0])
    sink = video.AnnotatedVideo(tmp_path / "annotated.mp4", info, smooth_s=0.0, max_gap_s=0.1, sample_interval_s=0.04)
    pixels = np.full((info.height, info.width, 3), 128, np.uint8)

    def push(index: int) -> None:
        sink.push(Frame(index, index / 25, pixels), Faces.empty(index, index / 25))

    for index in range(10):  # frames drawn once the analysis is past them: the encoder starts
        push(index)
    deadline = time.monotonic() + 30
    while sink._state._encoder is None and time.monotonic() < deadline:
        time.sleep(0.05)
    encoder = sink._state._encoder
    assert encoder is not None
    os.kill(encoder._proc.pid, signal.SIGSTOP)  # ffmpeg stops reading its pipe
    for index in range(10, 40):
        push(index)
    time.sleep(1.0)  # the drawing thread is now blocked writing a frame
    aborting = threading.Thread(target=sink.abort, daemon=True)
    aborting.start()
    aborting.join(30)
    assert not aborting.is_alive(), "abort hung on the stalled encoder"
    assert not sink._worker.is_alive()
    assert encoder._proc.poll() is not None and not encoder.tmp.exists() and not (tmp_path / "annotated.mp4").exists()
