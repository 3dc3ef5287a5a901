"""`-o s3://bucket/prefix` against a local S3 server (moto's server mode on 127.0.0.1)."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import cli, s3_client, s3_keys, s3_parquet

pytest.importorskip("boto3")
pytest.importorskip("moto")


def test_results_round_trip_through_s3(tmp_path, two_face_clip, tiny_model, s3_env):
    args = [two_face_clip[0], "--model", tiny_model, "--no-video"]
    assert cli("analyze", *args, "-o", tmp_path / "local").returncode == 0
    done = cli("analyze", *args, "-o", "s3://results/run1", env=s3_env)
    assert done.returncode == 0, done.stderr
    assert "s3://results/run1/two faces" in done.stderr
    keys = s3_keys(s3_env, "run1/")
    assert {"summary.parquet", "index.html", "two faces/manifest.json", "two faces/timeline.parquet",
            "two faces/faces.parquet", "two faces/report.html"} <= keys
    pd.testing.assert_frame_equal(s3_parquet(s3_env, "run1/two faces/timeline.parquet"),
                                  pd.read_parquet(tmp_path / "local" / "two faces" / "timeline.parquet"))
    again = cli("analyze", *args, "-o", "s3://results/run1", env=s3_env)
    assert again.returncode == 0 and "already complete" in again.stderr
    assert len(s3_parquet(s3_env, "run1/summary.parquet")) == len(pd.read_parquet(tmp_path / "local" / "summary.parquet"))


def test_a_result_without_its_manifest_is_redone(two_face_clip, tiny_model, s3_env):
    args = [two_face_clip[0], "--model", tiny_model, "--no-video", "-o", "s3://results/run2"]
    assert cli("analyze", *args, env=s3_env).returncode == 0
    s3_client(s3_env).delete_object(Bucket="results", Key="run2/two faces/manifest.json")  # an upload cut short
    again = cli("analyze", *args, env=s3_env)
    assert again.returncode == 0 and "already complete" not in again.stderr
    assert "two faces/manifest.json" in s3_keys(s3_env, "run2/")


def test_an_unreachable_bucket_fails_before_any_work(two_face_clip, s3_env):
    done = cli("analyze", two_face_clip[0], "-o", "s3://no-such-bucket/x", env=s3_env)
    assert done.returncode == 1 and "cannot write to s3://no-such-bucket/x" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_s3_input_is_downloaded_analysed_and_named_by_its_uri(tmp_path, two_face_clip, tiny_model, s3_env):
    s3_client(s3_env).upload_file(str(two_face_clip[0]), "results", "inputs/interview.mp4")
    uri = "s3://results/inputs/interview.mp4"
    args = ["--model", tiny_model, "--no-video", "-o", tmp_path / "out"]
    done = cli("analyze", uri, "s3://results/inputs/missing.mp4", *args, env=s3_env)
    assert done.returncode == 1, done.stderr
    assert "s3://results/inputs/missing.mp4: cannot read" in done.stderr and "Traceback" not in done.stderr
    timeline = pd.read_parquet(tmp_path / "out" / "interview" / "timeline.parquet")
    assert set(timeline.video) == {uri} and timeline.face_id.nunique() == 2
    import json

    manifest = json.loads((tmp_path / "out" / "interview" / "manifest.json").read_text())
    assert manifest["source"] == uri and manifest["source_size"] == two_face_clip[0].stat().st_size
    again = cli("analyze", uri, *args, env=s3_env)  # the identity is the object's, not the download's
    assert again.returncode == 0 and "already complete" in again.stderr
