"""The emotion CNN's architecture, and the network as torch modules for training.

`Architecture` says what the network is: VGG-style blocks of [3x3 Conv2D, BatchNorm, ReLU] x n, each
block closed by 2x2 max pooling and dropout, then Flatten, Dense, BatchNorm, ReLU, Dropout and a Dense
layer of logits. `TrainingNet` is that network as torch modules: training runs it under bf16 autocast in
channels-last layout (much faster on CPUs with bf16 units than Keras' own layers). The product is still a
`.keras` file: `model.keras_network` builds the same layers in Keras and `model.copy_weights` writes these
weights into them, so the file loads in Keras on any backend and in `torchnet.py`.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from emotiontrack.model.settings import Architecture


class FlattenChannelsLast(nn.Module):
    """Flatten (N, C, H, W) in Keras' (H, W, C) order, so that the Dense weights mean the same in both."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


class TrainingNet(nn.Module):
    """Raw 0-255 grayscale faces (N, 1, 48, 48) in, logits (N, n_classes) out."""

    def __init__(self, architecture: Architecture, n_classes: int):
        super().__init__()
        self.architecture, self.n_classes = architecture, n_classes
        layers: list[nn.Module] = []
        channels = 1
        for filters, n_convs in architecture.blocks:
            for _ in range(n_convs):
                layers += [nn.Conv2d(channels, filters, 3, padding=1, bias=False),
                           nn.BatchNorm2d(filters, eps=architecture.epsilon), nn.ReLU(inplace=True)]
                channels = filters
            layers += [nn.MaxPool2d(2), nn.Dropout(architecture.block_dropout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            FlattenChannelsLast(),
            nn.Linear(architecture.flat_features(), architecture.dense, bias=False),
            nn.BatchNorm1d(architecture.dense, eps=architecture.epsilon),
            nn.ReLU(inplace=True),
            nn.Dropout(architecture.head_dropout),
            nn.Linear(architecture.dense, n_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(faces / 255.0))

    def keras_weights(self) -> list[list[torch.Tensor]]:
        """Each weighted layer's variables in Keras' order (Conv2D, BatchNormalization, Dense), in network order."""
        out: list[list[torch.Tensor]] = []
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                out.append([module.weight.permute(2, 3, 1, 0)])  # torch (out, in, kh, kw) -> Keras (kh, kw, in, out)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                assert module.running_mean is not None and module.running_var is not None
                out.append([module.weight, module.bias, module.running_mean, module.running_var])
            elif isinstance(module, nn.Linear):
                out.append([module.weight.T] + ([module.bias] if module.bias is not None else []))
        return out


def as_batch(images: NDArray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None].contiguous(memory_format=torch.channels_last)


def predict_logits(net: TrainingNet, images: NDArray[np.uint8], flip_average: bool, bf16: bool = True,
                   batch_size: int = 512) -> NDArray[np.float32]:
    """The network's logits (averaged with the mirror image's when `flip_average`) for (n, 48, 48) images."""
    net.eval()
    parts = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(images), batch_size):
            x = as_batch(images[start : start + batch_size])
            logits = net(x).float()
            if flip_average:
                logits = (logits + net(x.flip(3)).float()) / 2
            parts.append(logits.numpy())
    return np.concatenate(parts) if parts else np.empty((0, net.n_classes), np.float32)
