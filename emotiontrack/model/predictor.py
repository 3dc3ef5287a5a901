"""The product model loaded for inference: 48x48 grayscale face crops in, calibrated probabilities out.

One place decides how the network runs on this machine: torch, on the configured device, with bf16
convolutions where the CPU computes bf16 natively (AVX512-BF16, AMX) and float32 elsewhere (emulated bf16 is
~10x slower). `analyze` (through stages/classify.py), `evaluate`, distillation and the benchmarks all predict
through `EmotionModel.predict`, so they score exactly what runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from emotiontrack.errors import ModelError
from emotiontrack.geometry.align import Geometry
from emotiontrack.model.torchnet import EmotionNet, load_network
from emotiontrack.runtime import cpu_has_bf16
from emotiontrack.types import EMOTIONS

BATCH_SIZE = 256  # crops per forward pass


class EmotionModel:
    """`predict(crops) -> probabilities` (n, 7) in EMOTIONS order, for (n, 48, 48) uint8 grayscale crops."""

    def __init__(self, net: EmotionNet, device: str | torch.device = "cpu", model_sha256: str = "",
                 bf16: bool | None = None, batch_size: int = BATCH_SIZE):
        if sorted(net.labels) != sorted(EMOTIONS):
            raise ModelError(f"model classes {net.labels} are not the seven emotions {list(EMOTIONS)}")
        self.device = torch.device(device)
        # NHWC lets CPU convolutions and pooling vectorise: ~2x faster here for these small feature maps.
        self._memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.net = net.to(self.device).to(memory_format=self._memory_format).eval()
        self.model_sha256, self.batch_size = model_sha256, batch_size
        # None decides by the CPU; False keeps float32 everywhere (models/MODEL_CARD.md: the same accuracy).
        self.bf16 = (self.device.type == "cpu" and cpu_has_bf16()) if bf16 is None else bf16
        self._order = [net.labels.index(name) for name in EMOTIONS]  # model output -> EMOTIONS columns

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", bf16: bool | None = None) -> EmotionModel:
        """The model in a file written by `emotiontrack train` (ModelError for anything else)."""
        path = Path(path)
        return cls(load_network(path), device, hashlib.sha256(path.read_bytes()).hexdigest(), bf16)

    @property
    def geometry(self) -> Geometry | None:
        """Where the model's training faces have their five landmarks (None for models that predate it)."""
        return Geometry.from_json(self.net.landmarks) if self.net.landmarks else None

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
