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


def test_a_failed_overwrite_leaves_the_older_result_whole(tmp_path, two_face_clip, tiny_model, s3_env, monkeypatch):
    """`--overwrite` to S3: until the new result is uploaded whole, the older one stays complete (as locally,
    where it stays until the new folder is renamed into place)."""
    import botocore.exceptions

    from emotiontrack import s3
    from emotiontrack.errors import OutputError

    args = [two_face_clip[0], "--model", tiny_model, "--no-video"]
    assert cli("analyze", *args, "-o", "s3://results/run4", env=s3_env).returncode == 0
    client = s3_client(s3_env)
    old = {key: client.get_object(Bucket="results", Key=f"run4/two faces/{key}")["Body"].read()
           for key in ("manifest.json", "timeline.parquet")}
    assert cli("analyze", *args, "--smooth", "0", "-o", tmp_path / "new", env=s3_env).returncode == 0
    new = tmp_path / "new" / "two faces"

    class DroppedConnection:
        """The real client, except that uploading the timeline breaks off as a dropped connection does."""

        def __getattr__(self, name):
            return getattr(client, name)

        def upload_file(self, filename, bucket, key, **kwargs):
            if key.endswith("timeline.parquet"):
                raise botocore.exceptions.EndpointConnectionError(endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"])
            return client.upload_file(filename, bucket, key, **kwargs)

    prefix = s3.S3Prefix("results", "run4/two faces")
    monkeypatch.setattr(s3, "_client", DroppedConnection)
    with pytest.raises(OutputError, match="cannot upload to s3://results/run4/two faces"):
        s3.upload_result(new, prefix)
    for key, body in old.items():
        assert client.get_object(Bucket="results", Key=f"run4/two faces/{key}")["Body"].read() == body
    assert not [k for k in s3_keys(s3_env, "run4/") if ".partial-" in k]
    monkeypatch.setattr(s3, "_client", lambda: client)
    s3.upload_result(new, prefix)  # the connection is back: the new result replaces the old one
    manifest = client.get_object(Bucket="results", Key="run4/two faces/manifest.json")["Body"].read()
    assert manifest == (new / "manifest.json").read_bytes() != old["manifest.json"]
    assert s3_parquet(s3_env, "run4/two faces/timeline.parquet").equals(pd.read_parquet(new / "timeline.parquet"))
    assert not [k for k in s3_keys(s3_env, "run4/") if ".partial-" in k]
