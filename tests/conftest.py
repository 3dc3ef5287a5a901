"""Shared fixtures: generated media and a tiny model trained by the tests themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotiontrack.types import EMOTIONS

# torch's OpenMP threads spin-wait by default, which starves ffmpeg subprocesses on small machines.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHARED = Path(__file__).resolve().parents[2] / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # scoring code the benchmarks share
FER_ZIP = SHARED / "datasets" / "fer2013.zip"


def cli(*args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`emotiontrack ARGS...` as a user runs it (a wide terminal, so one-line messages stay on one line)."""
    return subprocess.run([sys.executable, "-m", "emotiontrack.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})


def leftovers(folder: Path) -> list[str]:
    """Temporary files or staging folders left anywhere under folder."""
    return [str(p) for p in folder.rglob("*") if ".partial-" in p.name or ".tmp" in p.name or ".old-" in p.name]


def needs_fer():
    return pytest.mark.skipif(not FER_ZIP.is_file(), reason="../shared/datasets/fer2013.zip not present")


def pattern(index: int, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 texture per class that survives flips, small shifts and rotations (stripes, checks, rings)."""
    y, x = np.mgrid[0:48, 0:48].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    waves = [np.sin(y / 2 + phase), np.sin(y / 6 + phase), np.sin(x / 2 + phase), np.sin(x / 6 + phase),
             np.sign(np.sin(x / 3 + phase) * np.sin(y / 3 + phase)), np.sin(np.hypot(x - 24, y - 24) / 2 + phase),
             np.zeros_like(x)]
    image = 128 + 90 * waves[index % len(waves)] + rng.normal(0, 20, (48, 48))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image_dataset(root: Path, per_class: int = 4, classes=EMOTIONS, seed: int = 0) -> Path:
    """A folder-per-emotion dataset of 48x48 grayscale PNGs, one texture per class."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            cv2.imwrite(str(folder / f"{k:03d}.png"), pattern(index, rng))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    write_image_dataset(root / "train", per_class=6, seed=1)
    write_image_dataset(root / "validation", per_class=3, seed=2)
    return root


@pytest.fixture(scope="session")
def landmark_detector():
    """MTCNN as training uses it, to find the landmarks of (enlarged) training faces."""
    from emotiontrack.stages.detect import LANDMARK_MIN_FACE, MTCNNDetector

    return MTCNNDetector(min_face=LANDMARK_MIN_FACE)


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, tmp_path_factory, landmark_detector) -> Path:
    """A real model file, trained for one epoch on the generated dataset (seconds, not hours)."""
    from emotiontrack.model.train import TrainConfig, train

    output = tmp_path_factory.mktemp("model") / "tiny.keras"
    train(TrainConfig(data=tiny_dataset, output=output, epochs=1, batch_size=16), landmark_detector)
    return output


@pytest.fixture(scope="session")
def models(tiny_model):
    from emotiontrack.config import AnalyzeConfig
    from emotiontrack.pipeline import load_models

    return load_models(AnalyzeConfig(model=tiny_model, device="cpu"))


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    from emotiontrack.media.tools import ffmpeg_path

    return ffmpeg_path()


@pytest.fixture(scope="session")
def two_face_clip(tmp_path_factory) -> tuple[Path, list]:
    """4 s of 640x360 at 25 fps: two astronaut faces moving in opposite directions, with audio."""
    from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

    a, b = astronaut_face(180), astronaut_face(160, mirrored=True)
    sprites = [
        Sprite(lambda t: a, linear_path((10, 20), (260, 40), 4.0), "a"),
        Sprite(lambda t: b, linear_path((470, 190), (220, 180), 4.0), "b"),
    ]
    path = tmp_path_factory.mktemp("clips") / "two faces.mp4"
    truth = write_clip(path, sprites, size=(640, 360), fps=25, duration_s=4.0, audio=True)
    return path, truth




@pytest.fixture(scope="session")
def s3_env():
    """A fresh moto S3 server and a bucket; the environment that points boto3 at it."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL_S3": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    s3_client(env).create_bucket(Bucket="results")
    yield env
    server.stop()


def s3_client(env):
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], aws_access_key_id="test",
                        aws_secret_access_key="test", region_name="us-east-1")


def s3_keys(env, prefix: str) -> set[str]:
    listing = s3_client(env).list_objects_v2(Bucket="results", Prefix=prefix)
    return {item["Key"][len(prefix):] for item in listing.get("Contents", [])}


def s3_parquet(env, key: str):
    import io

    import pandas as pd

    return pd.read_parquet(io.BytesIO(s3_client(env).get_object(Bucket="results", Key=key)["Body"].read()))
