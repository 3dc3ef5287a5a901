"""The torch training network and the `.keras` product file it becomes compute the same thing."""

import numpy as np
import pytest
import torch

from emotiontrack.model.network import TrainingNet
from emotiontrack.model.settings import ARCHITECTURES, Architecture
from emotiontrack.types import EMOTIONS

SMALL = Architecture(blocks=((8, 1), (16, 2)), dense=16)


def _trained_looking(architecture: Architecture, seed: int = 0) -> TrainingNet:
    """A network with random weights and BatchNorm statistics far from their defaults (as after training)."""
    torch.manual_seed(seed)
    net = TrainingNet(architecture, len(EMOTIONS))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("flip_average", [True, False])
def test_weights_written_into_keras_give_the_torch_networks_probabilities(tmp_path, flip_average):
    from emotiontrack.model.keras_model import keras_network, load_model, with_calibrated_softmax, with_flip_average
    from emotiontrack.model.network import predict_logits
    from emotiontrack.model.torchnet import load_network

    net = _trained_looking(SMALL)
    network = keras_network(net)
    product = with_calibrated_softmax(with_flip_average(network) if flip_average else network, list(EMOTIONS), 0.8)
    path = tmp_path / "m.keras"
    product.save(path)

    faces = np.random.default_rng(1).integers(0, 256, (12, 48, 48)).astype(np.uint8)
    expected = torch.softmax(torch.from_numpy(predict_logits(net, faces, flip_average, bf16=False)) / 0.8, 1).numpy()
    keras_probs = np.asarray(load_model(path).predict(faces[..., None].astype(np.float32), verbose=0))
    with torch.inference_mode():
        torch_probs = load_network(path)(torch.from_numpy(faces[:, None].astype(np.float32))).numpy()
    np.testing.assert_allclose(keras_probs, expected, atol=1e-5)
    np.testing.assert_allclose(torch_probs, expected, atol=1e-5)
    assert not np.allclose(expected, expected.mean(0))  # the faces get different answers: the check has teeth


def test_every_named_architecture_builds_in_both_frameworks():
    from emotiontrack.model.keras_model import build_network

    for name, architecture in ARCHITECTURES.items():
        net = TrainingNet(architecture, 7)
        keras_count = build_network(7, architecture).count_params()
        torch_count = sum(p.numel() for p in net.parameters()) + sum(b.numel() for n, b in net.named_buffers()
                                                                      if "running" in n)
        assert keras_count == torch_count, name


def test_architecture_survives_json():
    assert Architecture.from_json(ARCHITECTURES["vgg-m"].to_json()) == ARCHITECTURES["vgg-m"]
