"""A saved emotion model run by torch alone: what `analyze` and `evaluate` classify with.

A `.keras` file is a zip of `config.json` (the layer graph) and `model.weights.h5`. Importing Keras costs
~4.6 s of every analyze run (its torch backend pulls in torch._dynamo and ml_dtypes), and its NHWC layers
cost ~3x more per face than torch's own modules with each BatchNormalization folded into the layer before
it. So the network that `model.py` defines (Rescaling, Conv2D, BatchNormalization, ReLU, MaxPooling2D,
Dropout, Flatten, Dense, optional mirror averaging, CalibratedSoftmax) is rebuilt here as torch modules
from those two files; tests/test_classify.py checks that it computes what Keras computes.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotiontrack.errors import ModelError


class EmotionNet(nn.Module):
    """Grayscale faces (n, 1, H, W), 0-255 floats, in; calibrated probabilities (n, len(labels)) out."""

    def __init__(self, layers: Sequence[nn.Module], labels: Sequence[str], temperature: float, flip_average: bool,
                 landmarks: list[list[float]] | None = None):
        super().__init__()
        self.body = nn.Sequential(*layers)
        self.labels = [str(label) for label in labels]
        self.temperature, self.flip_average = float(temperature), flip_average
        self.landmarks = landmarks  # canonical landmark positions of the training faces (align.Geometry), if stored

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if self.flip_average:  # the mean of the logits of each face and its mirror image, in one batch
            n = len(faces)
            logits = self.body(torch.cat([faces, faces.flip(3)])).float()
            logits = (logits[:n] + logits[n:]) / 2
        else:
            logits = self.body(faces).float()
        with torch.autocast(faces.device.type, enabled=False):  # the calibrated softmax in float32, under bf16 too
            return torch.softmax(logits / self.temperature, dim=1)


class Rescale(nn.Module):
    def __init__(self, scale: float, offset: float):
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


class FlattenChannelsLast(nn.Module):
    """Keras flattens (H, W, C) feature maps: the Dense weights expect that order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def load_network(path: str | Path) -> EmotionNet:
    """Read a model written by `emotiontrack train`; ModelError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = _read_weights(archive.read("model.weights.h5"))
        layers = config["config"]["layers"]
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ModelError(f"cannot load model {path}: not a Keras model file ({exc.__class__.__name__})") from None
    return _build(path, layers, weights)


def _read_weights(data: bytes) -> dict[str, list[np.ndarray]]:
    """Each layer's variables, by layer name, in the order Keras created them."""
    import h5py

    out: dict[str, list[np.ndarray]] = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        def visit(name: str, item) -> None:
            if name.endswith("/vars") and isinstance(item, h5py.Group) and "name" in item.attrs:
                out[str(item.attrs["name"])] = [np.asarray(item[k]) for k in sorted(item, key=int)]

        f.visititems(visit)
    return out


def _build(path: Path, layers: list[dict], weights: dict[str, list[np.ndarray]]) -> EmotionNet:
    modules: list[nn.Module] = []
    flip_average, labels, temperature, landmarks = False, None, 1.0, None
    for layer in layers:
        kind, cfg = layer["class_name"], layer["config"]
        params = weights.get(cfg["name"], [])
        if kind in ("InputLayer", "Dropout", "Average"):  # Average closes the mirror branch handled in forward
            continue
        if kind == "HorizontalFlip":
            flip_average = True
        elif kind == "Rescaling":
            modules.append(Rescale(float(cfg["scale"]), float(cfg["offset"])))
        elif kind == "Conv2D":
            modules += _conv(path, cfg, params)
        elif kind == "Dense":
            modules += _dense(cfg, params)
        elif kind == "BatchNormalization":
            _fold_batch_norm(path, modules, cfg, params)
        elif kind == "Activation":
            modules += _activation(path, cfg["activation"])
        elif kind == "MaxPooling2D" and cfg["padding"] == "valid":
            modules.append(nn.MaxPool2d(tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])))
        elif kind == "Flatten":
            modules.append(FlattenChannelsLast())
        elif kind == "CalibratedSoftmax":
            labels, temperature = cfg["labels"], float(params[0]) if params else float(cfg["temperature"])
            landmarks = cfg.get("landmarks")
        else:
            raise ModelError(f"cannot load model {path}: layer {cfg['name']} ({kind}) is not one emotiontrack builds")
    if labels is None:
        raise ModelError(f"{path} is not an emotiontrack model (no CalibratedSoftmax head)")
    return EmotionNet(modules, labels, temperature, flip_average, landmarks).eval()


def _conv(path: Path, cfg: dict, params: list[np.ndarray]) -> list[nn.Module]:
    if cfg["padding"] not in ("same", "valid") or tuple(cfg["dilation_rate"]) != (1, 1) or cfg["groups"] != 1 \
            or (cfg["padding"] == "same" and tuple(cfg["strides"]) != (1, 1)):
        raise ModelError(f"cannot load model {path}: unsupported Conv2D settings in {cfg['name']}")
    kernel = torch.from_numpy(params[0]).permute(3, 2, 0, 1)  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
    conv = nn.Conv2d(kernel.shape[1], kernel.shape[0], (kernel.shape[2], kernel.shape[3]), tuple(cfg["strides"]),
                     padding=cfg["padding"], bias=True)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        assert conv.bias is not None
        conv.bias.copy_(torch.from_numpy(params[1]) if cfg["use_bias"] else torch.zeros(kernel.shape[0]))
    return [conv, *_activation(path, cfg["activation"])]


def _dense(cfg: dict, params: list[np.ndarray]) -> list[nn.Module]:
    kernel = torch.from_numpy(params[0]).T
    dense = nn.Linear(kernel.shape[1], kernel.shape[0], bias=True)
    with torch.no_grad():
        dense.weight.copy_(kernel)
        dense.bias.copy_(torch.from_numpy(params[1]) if cfg["use_bias"] else torch.zeros(kernel.shape[0]))
    return [dense, *_activation(None, cfg["activation"])]


def _fold_batch_norm(path: Path, modules: list[nn.Module], cfg: dict, params: list[np.ndarray]) -> None:
    """Inference-time BatchNormalization is an affine map per channel: fold it into the layer before."""
    previous = modules[-1] if modules else None
    if not isinstance(previous, (nn.Conv2d, nn.Linear)) or cfg["axis"] not in (-1, [-1], 3, [3]):
        raise ModelError(f"cannot load model {path}: {cfg['name']} does not follow a Conv2D or Dense layer")
    values = iter(torch.from_numpy(p).double() for p in params)
    gamma = next(values) if cfg["scale"] else None
    beta = next(values) if cfg["center"] else None
    mean, variance = next(values), next(values)
    factor = (gamma if gamma is not None else 1.0) / torch.sqrt(variance + cfg["epsilon"])
    shift = (beta if beta is not None else 0.0) - mean * factor
    assert previous.bias is not None  # _conv and _dense always give their layers a bias
    with torch.no_grad():
        shape = (-1,) + (1,) * (previous.weight.dim() - 1)
        previous.weight.copy_(previous.weight.double() * factor.reshape(shape))
        previous.bias.copy_(previous.bias.double() * factor + shift)


def _activation(path: Path | None, name: str) -> list[nn.Module]:
    if name == "linear":
        return []
    if name == "relu":
        return [nn.ReLU(inplace=True)]
    raise ModelError(f"cannot load model {path}: activation {name!r} is not one emotiontrack builds")
