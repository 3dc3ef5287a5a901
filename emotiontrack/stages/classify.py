"""Classify face crops into the seven emotions with the trained model (run by model/predictor.py).

Crops are framed like the model's training faces. With `crop="aligned"` (the default) each face's five
landmarks are mapped onto the canonical positions stored in the model (align.py); a face whose landmarks
are implausible, and every face with `crop="box"`, is cropped as the square of the detector's box's
longer side (enlarged by `margin`), turned grayscale and shrunk to 48x48 with area averaging. All crops of
a batch of frames go through the model in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from emotiontrack.config import CROPS, AnalyzeConfig
from emotiontrack.errors import ModelError
from emotiontrack.geometry.align import aligned_crop
from emotiontrack.geometry.crops import square_crop
from emotiontrack.model.predictor import EmotionModel
from emotiontrack.types import INPUT_SIZE, Faces


def crop_face(rgb: np.ndarray, xyxy: NDArray, margin: float = 0.0, size: int = INPUT_SIZE) -> np.ndarray:
    """A (size, size) grayscale crop: the box's square, enlarged by `margin` of its side on each side."""
    crop, _ = square_crop(rgb, xyxy, 1 + 2 * margin, size)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)


class EmotionClassifier:
    """`classify(frames_rgb, faces_list) -> faces_list` with `probs` set, in EMOTIONS order: each face cropped
    as configured, then all crops through the model (model/predictor.py) at once."""

    def __init__(self, model: EmotionModel, margin: float = AnalyzeConfig.margin, crop: str = AnalyzeConfig.crop):
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if crop == "aligned" and model.geometry is None:
            raise ModelError("the model stores no face geometry (it predates aligned crops): use --crop box")
        self.model, self.margin = model, margin
        self.geometry = model.geometry if crop == "aligned" else None

    @classmethod
    def load(cls, path: str | Path, margin: float = AnalyzeConfig.margin, device: str = "cpu",
             crop: str = AnalyzeConfig.crop, precision: str = AnalyzeConfig.precision) -> EmotionClassifier:
        """The classifier for a model file written by `emotiontrack train` (ModelError for anything else)."""
        return cls(EmotionModel.load(path, device, precision), margin, crop)

    @property
    def model_sha256(self) -> str:
        return self.model.model_sha256

    def crop(self, rgb: NDArray[np.uint8], faces: Faces) -> tuple[list[NDArray[np.uint8]], Faces]:
        """Each face's 48x48 grayscale crop, and the faces with `aligned` (aligned on the landmarks, else the
        box's square) and `align_error` (the alignment's residual, NaN for box crops) set."""
        crops, aligned = [], np.zeros(len(faces), np.bool_)
        errors = np.full(len(faces), np.nan, np.float32)
        for i, (box, points) in enumerate(zip(faces.xyxy, faces.landmarks)):
            crop, residual = aligned_crop(rgb, points, self.geometry) if self.geometry is not None else (None, np.nan)
            if crop is not None:
                aligned[i], errors[i] = True, residual
            crops.append(crop if crop is not None else crop_face(rgb, box, self.margin))
        return crops, replace(faces, aligned=aligned, align_error=errors)

    def classify(self, frames_rgb: Sequence[NDArray[np.uint8]], faces_list: Sequence[Faces]) -> list[Faces]:
        """The faces of each frame with `probs` (and `aligned`, `align_error`) set, all crops through the
        model in one call."""
        crops, cropped = [], []
        for rgb, faces in zip(frames_rgb, faces_list):
            frame_crops, frame_faces = self.crop(rgb, faces)
            crops += frame_crops
            cropped.append(frame_faces)
        probs = self.model.predict(np.stack(crops) if crops else np.empty((0, INPUT_SIZE, INPUT_SIZE), np.uint8))
        out, start = [], 0
        for faces in cropped:
            out.append(replace(faces, probs=probs[start : start + len(faces)]))
            start += len(faces)
        return out
