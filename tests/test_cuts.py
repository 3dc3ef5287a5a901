"""Shot cuts: found on every decoded frame, and no face id spans one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import cli


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory, ffmpeg) -> Path:
    """3 s of one face, a hard cut at 3.0 s to another face at the same place on another background, 3 s."""
    from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

    folder = tmp_path_factory.mktemp("cuts")
    a, b = astronaut_face(180), astronaut_face(190, mirrored=True)
    write_clip(folder / "a.mp4", [Sprite(lambda t: a, linear_path((200, 90), (230, 100), 3.0))], size=(640, 360),
               duration_s=3.0)
    write_clip(folder / "b.mp4", [Sprite(lambda t: b, linear_path((235, 95), (205, 90), 3.0))], size=(640, 360),
               duration_s=3.0, background=170)
    (folder / "list.txt").write_text("file 'a.mp4'\nfile 'b.mp4'\n")
    path = folder / "cut.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(folder / "list.txt"), "-c", "copy",
                    str(path)], check=True)
    return path


class EveryFrame:
    """A sink that wants every decoded frame, as the annotated video does (so ffmpeg samples nothing)."""

    wants_all_frames, optional = True, False

    def __init__(self):
        self.frames = 0

    def push(self, frame, faces) -> None:
        self.frames += 1

    def close(self) -> None: ...

    def abort(self) -> None: ...


@pytest.mark.parametrize("every_frame", [True, False])
def test_a_face_is_never_followed_across_a_cut(cut_clip, models, every_frame):
    """The face after the cut stands where the one before it stood: without the cut the tracker would carry
    the id on. Found with every frame passed on (the annotated video) and with only the sampled ones."""
    from emotiontrack.config import AnalyzeConfig
    from emotiontrack.media.probe import probe
    from emotiontrack.pipeline import analyze_video

    sinks = [EveryFrame()] if every_frame else []
    result = analyze_video(probe(cut_clip), AnalyzeConfig(), models, sinks=sinks)
    assert len(result.cuts_s) == 1 and abs(result.cuts_s[0] - 3.0) < 0.05
    before = {int(i) for f in result.faces if f.time_s < 3.0 for i in f.track_id}
    after = {int(i) for f in result.faces if f.time_s >= 3.0 for i in f.track_id}
    assert before and after and not before & after
    assert not every_frame or sinks[0].frames == 150


def test_cuts_are_in_the_timeline_metadata_and_none_are_found_in_one_shot(tmp_path, cut_clip, two_face_clip, tiny_model):
    done = cli("analyze", cut_clip, two_face_clip[0], "-o", tmp_path / "out", "--model", tiny_model, "--no-video")
    assert done.returncode == 0, done.stderr
    cut = json.loads(pq.read_schema(tmp_path / "out" / "cut" / "timeline.parquet").metadata[b"cuts_s"])
    one_shot = json.loads(pq.read_schema(tmp_path / "out" / "two faces" / "timeline.parquet").metadata[b"cuts_s"])
    assert len(cut) == 1 and one_shot == []
