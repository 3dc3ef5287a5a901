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

# Crops per forward pass. On a CPU, oneDNN builds its convolutions per input shape and keeps each with its
# own reordered copy of the weights (~23 MB for vgg-l): batches of every size that chunks of faces happen to
# have grew memory by ~340 MB (`ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/micro.py shapes`: batches of 1-40
# faces, 998 MiB peak RSS straight through the network). So on a CPU every batch has one shape, BATCH_CPU
# faces, the last one padded with blank faces; analyze's chunks hold 8 analysed frames, so most hold a
# multiple of 8 faces and nothing is padded. A GPU takes larger batches (padded to a multiple of PAD_TO).
BATCH_CPU, BATCH_GPU, PAD_TO = 8, 256, 8


class EmotionModel:
    """`predict(crops) -> probabilities` (n, 7) in EMOTIONS order, for (n, 48, 48) uint8 grayscale crops."""

    def __init__(self, net: EmotionNet, device: str | torch.device = "cpu", model_sha256: str = "",
                 bf16: bool | None = None):
        if sorted(net.labels) != sorted(EMOTIONS):
            raise ModelError(f"model classes {net.labels} are not the seven emotions {list(EMOTIONS)}")
        self.device = torch.device(device)
        # NHWC lets CPU convolutions and pooling vectorise: ~2x faster here for these small feature maps.
        self._memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.net = net.to(self.device).to(memory_format=self._memory_format).eval()
        self.model_sha256 = model_sha256
        self.batch_size = BATCH_CPU if self.device.type == "cpu" else BATCH_GPU
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
                batch = padded(crops[i : i + self.batch_size], self.batch_size)
                x = torch.from_numpy(batch)[:, None].to(self.device).float().contiguous(memory_format=self._memory_format)
                parts.append(self.net(x).float().cpu().numpy()[: min(self.batch_size, len(crops) - i)])
        return np.concatenate(parts)[:, self._order].astype(np.float32)


def padded(crops: NDArray[np.uint8], batch_size: int) -> NDArray[np.uint8]:
    """The crops, with blank ones after them up to a multiple of PAD_TO (at most `batch_size`): the network
    sees one batch shape, or few. Each face's answer does not depend on the others in its batch."""
    size = min(batch_size, -(-len(crops) // PAD_TO) * PAD_TO)
    if size == len(crops):
        return np.ascontiguousarray(crops)
    out = np.zeros((size, *crops.shape[1:]), np.uint8)
    out[: len(crops)] = crops
    return out
