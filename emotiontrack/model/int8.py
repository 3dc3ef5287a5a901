"""The emotion CNN in int8, for x86 CPUs without native bf16 (AVX2, AVX-512 without BF16).

On an AVX2 EPYC (Zen 3), one core, batches of 16 PublicTest faces, the shipped vgg-l costs ~10 ms a face in
float32 and ~4.8 ms in int8 through torch's own quantized operators on oneDNN, with per-channel int8 weights
and 8-bit activations (`python benchmarks/micro.py int8`, reports in models/MODEL_CARD.md). oneDNN was
measured against fbgemm (6.5 ms, 7-bit activations: 98.6% of faces named alike) and gave 99.3% agreement.

The `.keras` file stays the source of truth. What int8 needs beyond it is the range of each layer's
activations, measured on training faces by `emotiontrack quantize` (HistogramObserver: the range that
minimises the quantization error) and shipped beside the model as `<model>.int8.json`, which names the
model's SHA-256. At load the network is rebuilt from the `.keras` weights (per-channel weights quantized
then) and those ranges, in ~0.2 s. torch's quantized engine is process-wide: it is set to oneDNN when an
int8 network is built; nothing else in emotiontrack runs quantized operators.

torch marks its eager-mode quantization deprecated (torchao's replacements compile the network with
inductor: tens of seconds at start-up) but keeps it in the pinned 2.14; its warnings are silenced here, and
a torch without it makes `available()` false (float32 then).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

try:
    import torch.ao.quantization as tq
except ImportError:  # a later torch without eager-mode quantization
    tq = None  # type: ignore[assignment]

from emotiontrack.config import CALIBRATION_FACES
from emotiontrack.errors import ModelError
from emotiontrack.files import write_text
from emotiontrack.model.torchnet import EmotionNet, FlattenChannelsLast, Rescale

ENGINE = "onednn"
SIDECAR_SUFFIX = ".int8.json"


class _Int8Body(nn.Module):
    """The network's body with float input scaling, then quantized layers, then float logits."""

    def __init__(self, rescale: nn.Module, layers: list[nn.Module]):
        super().__init__()
        self.rescale, self.quant, self.layers, self.dequant = rescale, tq.QuantStub(), nn.Sequential(*layers), tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.layers(self.quant(self.rescale(x))))


def sidecar_path(model_path: Path) -> Path:
    """models/emotiontrack.keras -> models/emotiontrack.int8.json"""
    return model_path.with_name(model_path.stem + SIDECAR_SUFFIX)


def available() -> bool:
    """Whether torch has eager-mode quantization and the quantized engine int8 runs on (x86 builds)."""
    return tq is not None and ENGINE in torch.backends.quantized.supported_engines


@contextmanager
def _quiet() -> Iterator[None]:
    """torch's deprecation notices for eager-mode quantization and quantized tensors, once per process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantized tensor creation functions.*")
        yield


def _prepared(net: EmotionNet, observer) -> _Int8Body:
    """The body as a quantizable module, observers in place: 'same' padding made explicit (quantized convs take
    numbers), each Conv2d or Linear fused with the ReLU after it, Keras' channels-last flattening folded into
    the first Linear's weights."""
    modules = list(net.body)
    if not modules or not isinstance(modules[0], Rescale):
        raise ModelError("this network does not start with input scaling: it cannot run in int8")
    layers: list[nn.Module] = []
    for module in modules[1:]:
        if isinstance(module, nn.Conv2d) and module.padding == "same":
            kh, kw = module.kernel_size
            conv = nn.Conv2d(module.in_channels, module.out_channels, (kh, kw), 1, padding=(kh // 2, kw // 2))
            conv.load_state_dict(module.state_dict())
            module = conv
        layers.append(module)
    for i, module in enumerate(layers):
        if isinstance(module, FlattenChannelsLast):
            layers[i] = nn.Flatten()
            _reorder_flattened_inputs(layers, i)
    body = _Int8Body(modules[0], layers).eval()
    pairs = [[f"layers.{i}", f"layers.{i + 1}"] for i in range(len(layers) - 1)
             if isinstance(layers[i], (nn.Conv2d, nn.Linear)) and isinstance(layers[i + 1], nn.ReLU)]
    body = tq.fuse_modules(body, pairs)
    torch.backends.quantized.engine = ENGINE
    body.qconfig = tq.QConfig(activation=observer, weight=tq.PerChannelMinMaxObserver.with_args(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    with _quiet():
        return tq.prepare(body)


def _reorder_flattened_inputs(layers: list[nn.Module], flatten_at: int) -> None:
    """The Linear after a flatten took Keras' (H, W, C) order; nn.Flatten gives (C, H, W)."""
    channels = next(m.out_channels for m in reversed(layers[:flatten_at]) if isinstance(m, nn.Conv2d))
    linear = next(m for m in layers[flatten_at:] if isinstance(m, nn.Linear))
    side = int(round((linear.in_features // channels) ** 0.5))
    with torch.no_grad():
        w = linear.weight.reshape(linear.out_features, side, side, channels).permute(0, 3, 1, 2)
        linear.weight.copy_(w.reshape(linear.out_features, -1))


def _observers(body: nn.Module) -> list[tq.ObserverBase]:
    """The activation observers `prepare` placed, in network order."""
    found = (getattr(m, "activation_post_process", None) for m in body.modules())
    return [o for o in found if isinstance(o, tq.ObserverBase)]


def calibrate(net: EmotionNet, images: NDArray[np.uint8], model_sha256: str, batch_size: int = 128) -> dict:
    """Each quantized layer's activation range, from these faces (n, 48, 48): what `<model>.int8.json` holds."""
    body = _prepared(net, tq.HistogramObserver.with_args(reduce_range=False))
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            body(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))[:, None].float())
    ranges = []
    for observer in _observers(body):
        scale, zero_point = observer.calculate_qparams()
        lo, hi = (0 - int(zero_point)) * float(scale), (255 - int(zero_point)) * float(scale)
        ranges.append([lo, hi])
    return {"model_sha256": model_sha256, "engine": ENGINE, "faces": len(images), "activation_ranges": ranges}


def int8_network(net: EmotionNet, calibration: dict) -> EmotionNet:
    """A copy of `net` whose body runs in int8, with the activation ranges of `calibration`."""
    body = _prepared(net, tq.MinMaxObserver.with_args(reduce_range=False))
    observers = _observers(body)
    if len(observers) != len(calibration["activation_ranges"]):
        raise ModelError("the int8 calibration does not fit this network: run `emotiontrack quantize` again")
    for observer, (lo, hi) in zip(observers, calibration["activation_ranges"]):
        observer.min_val, observer.max_val = torch.tensor(float(lo)), torch.tensor(float(hi))
    with _quiet():
        quantized = tq.convert(body)
    return EmotionNet([quantized], net.labels, net.temperature, net.flip_average, net.landmarks).eval()


def load_calibration(model_path: Path, model_sha256: str) -> dict | None:
    """The shipped calibration for this very model file, or None (absent, or made for another model)."""
    path = sidecar_path(model_path)
    try:
        calibration = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return calibration if calibration.get("model_sha256") == model_sha256 else None


def write_calibration(model_path: Path, calibration: dict) -> Path:
    return write_text(sidecar_path(model_path), json.dumps(calibration, indent=1) + "\n")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def quantize(model_path: Path, data: Path, split: str | None = "train", faces: int = CALIBRATION_FACES,
             seed: int = 0) -> tuple[Path, dict]:
    """Calibrate the model's int8 activations on `faces` random faces of a folder-per-emotion split and write
    `<model>.int8.json` beside it."""
    from emotiontrack.model.dataset import load_split
    from emotiontrack.model.torchnet import load_network
    from emotiontrack.types import EMOTIONS

    if not available():
        raise ModelError("int8 needs torch's oneDNN quantized engine (x86 builds)")
    images = load_split(data, EMOTIONS, require_all=False, split=split).images
    chosen = np.random.default_rng(seed).choice(len(images), min(faces, len(images)), replace=False)
    calibration = calibrate(load_network(model_path), images[np.sort(chosen)], file_sha256(model_path))
    return write_calibration(model_path, calibration), calibration
