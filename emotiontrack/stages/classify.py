"""Classify face crops into the seven emotions with the trained model (run by torch: see torchnet.py).

Crops are framed like the model's training faces. With `crop="aligned"` (the default) each face's five
landmarks are mapped onto the canonical positions stored in the model (align.py); a face whose landmarks
are implausible, and every face with `crop="box"`, is cropped as the square of the detector's box's
longer side (enlarged by `margin`), turned grayscale and shrunk to 48x48 with area averaging. All crops of
a batch of frames go through the model in one call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from emotiontrack.config import CROPS, AnalyzeConfig
from emotiontrack.errors import ModelError
from emotiontrack.model.torchnet import EmotionNet, load_network
from emotiontrack.runtime import cpu_has_bf16
from emotiontrack.stages.align import Geometry, aligned_crop
from emotiontrack.stages.crops import square_crop
from emotiontrack.types import EMOTIONS, INPUT_SIZE, Faces


def crop_face(rgb: np.ndarray, xyxy: NDArray, margin: float = 0.0, size: int = INPUT_SIZE) -> np.ndarray:
    """A (size, size) grayscale crop: the box's square, enlarged by `margin` of its side on each side."""
    crop, _ = square_crop(rgb, xyxy, 1 + 2 * margin, size)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)


class EmotionClassifier:
    """`classify(frames_rgb, faces_list) -> faces_list` with `probs` set, in EMOTIONS order."""

    def __init__(self, net: EmotionNet, margin: float = AnalyzeConfig.margin, device: str = "cpu",
                 batch_size: int = 256, model_sha256: str = "", crop: str = AnalyzeConfig.crop,
                 bf16: bool | None = None):
        if sorted(net.labels) != sorted(EMOTIONS):
            raise ModelError(f"model classes {net.labels} are not the seven emotions {list(EMOTIONS)}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if crop == "aligned" and net.landmarks is None:
            raise ModelError("the model stores no face geometry (it predates aligned crops): use --crop box")
        self.geometry = Geometry.from_json(net.landmarks) if crop == "aligned" and net.landmarks else None
        self.device = torch.device(device)
        # NHWC lets CPU convolutions and pooling vectorise: ~2x faster here for these small feature maps.
        self._memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.net = net.to(self.device).to(memory_format=self._memory_format).eval()
        self.margin, self.batch_size, self.model_sha256 = margin, batch_size, model_sha256
        # bf16 convolutions where the CPU has bf16 instructions (AVX512-BF16, AMX): ~2.5x faster a face, the
        # same accuracy (models/MODEL_CARD.md); None decides by the CPU, False keeps float32 everywhere.
        self.bf16 = (self.device.type == "cpu" and cpu_has_bf16()) if bf16 is None else bf16
        self._order = [net.labels.index(name) for name in EMOTIONS]  # model output -> EMOTIONS columns

    @classmethod
    def load(cls, path: str | Path, margin: float = AnalyzeConfig.margin, device: str = "cpu",
             crop: str = AnalyzeConfig.crop, bf16: bool | None = None) -> EmotionClassifier:
        """The classifier for a model file written by `emotiontrack train` (ModelError for anything else)."""
        path = Path(path)
        return cls(load_network(path), margin, device, model_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                   crop=crop, bf16=bf16)

    def predict(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Probabilities (n, 7) in EMOTIONS order for (n, 48, 48) uint8 grayscale crops."""
        if len(crops) == 0:
            return np.empty((0, len(EMOTIONS)), np.float32)
        parts = []
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            for i in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(crops[i : i + self.batch_size]))[:, None]
                x = x.to(self.device).float().contiguous(memory_format=self._memory_format)
                parts.append(self.net(x).float().cpu().numpy())
        return np.concatenate(parts)[:, self._order].astype(np.float32)

    def crop(self, rgb: NDArray[np.uint8], faces: Faces) -> tuple[list[NDArray[np.uint8]], NDArray[np.bool_]]:
        """Each face's 48x48 grayscale crop, and whether it is aligned on the landmarks (else the box's)."""
        crops, aligned = [], np.zeros(len(faces), np.bool_)
        for i, (box, points) in enumerate(zip(faces.xyxy, faces.landmarks)):
            crop = aligned_crop(rgb, points, self.geometry) if self.geometry is not None else None
            aligned[i] = crop is not None
            crops.append(crop if crop is not None else crop_face(rgb, box, self.margin))
        return crops, aligned

    def classify(self, frames_rgb: Sequence[NDArray[np.uint8]], faces_list: Sequence[Faces]) -> list[Faces]:
        """The faces of each frame with `probs` (and `aligned`) set, all crops through the model in one call."""
        crops, aligned = [], []
        for rgb, faces in zip(frames_rgb, faces_list):
            frame_crops, frame_aligned = self.crop(rgb, faces)
            crops += frame_crops
            aligned.append(frame_aligned)
        probs = self.predict(np.stack(crops) if crops else np.empty((0, INPUT_SIZE, INPUT_SIZE), np.uint8))
        out, start = [], 0
        for faces, flags in zip(faces_list, aligned):
            out.append(replace(faces, probs=probs[start : start + len(faces)], aligned=flags))
            start += len(faces)
        return out
