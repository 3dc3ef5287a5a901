"""Classify face crops into the seven emotions with the trained Keras model.

Crops are framed like FER2013's faces: the square of the detector's box's longer side (MTCNN's box spans
about the height of a FER2013 image; see config.AnalyzeConfig.margin), turned grayscale and shrunk to
48x48 with area averaging. All crops of a batch of frames go through the model in one call.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from emotiontrack._keras import keras
from emotiontrack.crops import square_crop
from emotiontrack.errors import ModelError
from emotiontrack.model import INPUT_SIZE, load_model, model_labels
from emotiontrack.types import EMOTIONS, Faces

DEFAULT_MARGIN = 0.0


def crop_face(rgb: NDArray[np.uint8], xyxy: NDArray, margin: float = DEFAULT_MARGIN, size: int = INPUT_SIZE) -> NDArray[np.uint8]:
    """A (size, size) grayscale crop: the box's square, enlarged by `margin` of its side on each side."""
    crop, _ = square_crop(rgb, xyxy, 1 + 2 * margin, size)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)


def _keras_device(device: str) -> str:
    """Our device names in the spelling every Keras backend accepts."""
    return "gpu" if device.startswith("cuda") else "cpu"  # not "cpu:0": Keras then fails to load Dropout layers


class EmotionClassifier:
    """`classify(frames_rgb, faces_list) -> faces_list` with `probs` set, in EMOTIONS order."""

    def __init__(self, model: keras.Model, margin: float = DEFAULT_MARGIN, device: str = "cpu",
                 batch_size: int = 256, model_sha256: str = ""):
        labels = model_labels(model)
        if sorted(labels) != sorted(EMOTIONS):
            raise ModelError(f"model classes {labels} are not the seven emotions {list(EMOTIONS)}")
        self.model, self.margin, self.batch_size = model, margin, batch_size
        self.device = _keras_device(device)
        self.model_sha256 = model_sha256
        self._lock = threading.Lock()  # Keras layers are not documented as safe to call from several threads
        self._order = [labels.index(name) for name in EMOTIONS]  # model output -> EMOTIONS columns

    @classmethod
    def load(cls, path: str | Path, margin: float = DEFAULT_MARGIN, device: str = "cpu") -> EmotionClassifier:
        path = Path(path)
        with keras.device(_keras_device(device)):
            model = load_model(path)
        return cls(model, margin, device, model_sha256=hashlib.sha256(path.read_bytes()).hexdigest())

    def predict(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Probabilities (n, 7) in EMOTIONS order for (n, 48, 48) uint8 grayscale crops."""
        if len(crops) == 0:
            return np.empty((0, len(EMOTIONS)), np.float32)
        x = crops.astype(np.float32)[..., None]
        with self._lock, keras.device(self.device):
            parts = [keras.ops.convert_to_numpy(self.model([x[i : i + self.batch_size]], training=False))
                     for i in range(0, len(x), self.batch_size)]
        return np.concatenate(parts)[:, self._order].astype(np.float32)

    def classify(self, frames_rgb: Sequence[NDArray[np.uint8]], faces_list: Sequence[Faces]) -> list[Faces]:
        crops = [crop_face(rgb, box, self.margin) for rgb, faces in zip(frames_rgb, faces_list) for box in faces.xyxy]
        probs = self.predict(np.stack(crops) if crops else np.empty((0, INPUT_SIZE, INPUT_SIZE), np.uint8))
        out, start = [], 0
        for faces in faces_list:
            out.append(replace(faces, probs=probs[start : start + len(faces)]))
            start += len(faces)
        return out
