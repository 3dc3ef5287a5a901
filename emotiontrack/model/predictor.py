"""The product model loaded for inference: 48x48 grayscale face crops in, calibrated probabilities out.

One place decides how the network runs on this machine (`resolve_precision`): torch, on the configured device;
on a CPU with native bf16 (AVX512-BF16, AMX) bf16 convolutions; on other x86 CPUs (AVX2) int8 (model/int8.py:
~2x faster than float32, its accuracy in models/MODEL_CARD.md) where the model ships its int8 calibration,
else float32 (emulated bf16 is ~10x slower); on a GPU float32. `--precision` overrides the choice.
`analyze` (through stages/classify.py), `evaluate`, distillation and the benchmarks all predict through
`EmotionModel.predict`, so they score exactly what runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from emotiontrack.config import PRECISIONS
from emotiontrack.errors import ModelError
from emotiontrack.geometry.align import Geometry
from emotiontrack.model import int8
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
                 precision: str = "auto", int8_calibration: dict | None = None):
        if sorted(net.labels) != sorted(EMOTIONS):
            raise ModelError(f"model classes {net.labels} are not the seven emotions {list(EMOTIONS)}")
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device.type, int8_calibration is not None)
        if self.precision == "int8":
            assert int8_calibration is not None
            net = int8.int8_network(net, int8_calibration)
        # NHWC lets CPU convolutions and pooling vectorise: ~2x faster here for these small feature maps.
        self._memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.net = net.to(self.device).to(memory_format=self._memory_format).eval()
        self.model_sha256 = model_sha256
        self.batch_size = BATCH_CPU if self.device.type == "cpu" else BATCH_GPU
        self.bf16 = self.precision == "bf16"
        self._order = [net.labels.index(name) for name in EMOTIONS]  # model output -> EMOTIONS columns

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "auto") -> EmotionModel:
        """The model in a file written by `emotiontrack train` (ModelError for anything else), with its int8
        calibration (`<model>.int8.json`) where one was made for this very file."""
        path = Path(path)
        net = load_network(path)
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        calibration = int8.load_calibration(path, sha256)
        if precision == "int8" and calibration is None:
            raise ModelError(f"{path} has no int8 calibration ({int8.sidecar_path(path).name}): "
                             f"make one with `emotiontrack quantize {path} DATA_DIR`")
        return cls(net, device, sha256, precision, calibration)

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


def resolve_precision(precision: str, device_type: str, has_int8: bool) -> str:
    """What "auto" means here: bf16 on CPUs that compute it natively, int8 on other x86 CPUs (where the model has
    an int8 calibration), float32 on a GPU and elsewhere. An explicit choice is checked, not changed."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and (device_type != "cpu" or not int8.available()):
        raise ModelError("--precision int8 runs on an x86 CPU (torch's oneDNN quantized engine)")
    if precision != "auto":
        return precision
    if device_type != "cpu":
        return "fp32"
    if cpu_has_bf16():
        return "bf16"
    return "int8" if has_int8 and int8.available() else "fp32"


def padded(crops: NDArray[np.uint8], batch_size: int) -> NDArray[np.uint8]:
    """The crops, with blank ones after them up to a multiple of PAD_TO (at most `batch_size`): the network
    sees one batch shape, or few. Each face's answer does not depend on the others in its batch."""
    size = min(batch_size, -(-len(crops) // PAD_TO) * PAD_TO)
    if size == len(crops):
        return np.ascontiguousarray(crops)
    out = np.zeros((size, *crops.shape[1:]), np.uint8)
    out[: len(crops)] = crops
    return out
