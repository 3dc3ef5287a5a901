"""The emotion CNN, shared by `train`, `evaluate` and `analyze`.

A VGG-style network for 48x48 grayscale faces (FER2013's format; `network.Architecture` says which):
Conv2D / BatchNorm / ReLU blocks with MaxPooling2D and Dropout, then Dense layers. It is trained as torch
modules (`network.TrainingNet`) whose weights `copy_weights` writes into these Keras layers. The network
outputs logits; the saved product model ends in `CalibratedSoftmax`, which divides by a temperature fitted
on validation data and carries the class names, so a `.keras` file is self-describing. Everything is
backend-neutral Keras 3 (`keras.ops` only). `analyze` and `evaluate` run the file with torch alone
(`torchnet.py`); this module is for training and for tests that check the file in Keras. It is the only
module that imports Keras: on the torch backend unless the user set KERAS_BACKEND, and after torch,
because TensorFlow 2.21 segfaults when imported before anything that loads triton (tensorflow#124205).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # training and loading need no TensorFlow

import torch  # noqa: F401  (before Keras: TensorFlow 2.21 segfaults if imported before anything that loads triton)

# isort: split
import keras

from emotiontrack.errors import ModelError
from emotiontrack.model.network import TrainingNet
from emotiontrack.model.settings import Architecture
from emotiontrack.types import INPUT_SIZE


@keras.saving.register_keras_serializable(package="emotiontrack")
class CalibratedSoftmax(keras.layers.Layer):
    """softmax(logits / temperature); stores the class names of the model's outputs and the canonical
    landmark positions of its training faces (`align.Geometry`: where aligned crops put eyes, nose and
    mouth corners; None in models trained before alignment)."""

    def __init__(self, labels: Sequence[str], temperature: float = 1.0,
                 landmarks: Sequence[Sequence[float]] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.labels = [str(label) for label in labels]
        self.initial_temperature = float(temperature)
        self.landmarks = None if landmarks is None else [[float(v) for v in point] for point in landmarks]

    def build(self, input_shape):
        self.temperature = self.add_weight(
            name="temperature",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False,
        )

    def call(self, logits):
        return keras.ops.softmax(logits / self.temperature, axis=-1)

    def get_config(self):
        temperature = float(keras.ops.convert_to_numpy(self.temperature)) if self.built else self.initial_temperature
        return {**super().get_config(), "labels": self.labels, "temperature": temperature, "landmarks": self.landmarks}


@keras.saving.register_keras_serializable(package="emotiontrack")
class HorizontalFlip(keras.layers.Layer):
    """Mirror images left-right (for test-time flip averaging: a face and its mirror show one emotion)."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)


def build_network(n_classes: int, architecture: Architecture) -> keras.Model:
    """The network in Keras: raw 0-255 grayscale (48, 48, 1) in, logits (n_classes,) out."""
    epsilon = architecture.epsilon
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="face")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    for filters, n_convs in architecture.blocks:
        for _ in range(n_convs):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization(epsilon=epsilon)(x)
            x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(architecture.block_dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(architecture.dense, use_bias=False)(x)
    x = keras.layers.BatchNormalization(epsilon=epsilon)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(architecture.head_dropout)(x)
    logits = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="emotion_cnn")


def keras_network(net: TrainingNet) -> keras.Model:
    """The Keras network holding a trained torch network's weights."""
    network = build_network(net.n_classes, net.architecture)
    copy_weights(net, network)
    return network


def copy_weights(net: TrainingNet, network: keras.Model) -> None:
    """Write the torch network's weights into the Keras network of the same architecture."""
    weighted = [layer for layer in network.layers if layer.weights]
    values = net.keras_weights()
    if len(weighted) != len(values):
        raise ModelError(f"the Keras network has {len(weighted)} weighted layers, the torch network {len(values)}")
    for layer, tensors in zip(weighted, values):
        layer.set_weights([t.detach().float().cpu().numpy() for t in tensors])


def with_flip_average(network: keras.Model) -> keras.Model:
    """The network's logits averaged over each face and its mirror image (test-time augmentation).

    The network's layers are applied twice (shared weights) in one flat graph: Keras 3 cannot load a
    functional model nested in another one on the torch backend when it holds Dropout layers."""
    inputs = keras.Input(network.inputs[0].shape[1:], name="face")
    branches = []
    for x in (inputs, HorizontalFlip(name="mirror")(inputs)):
        for layer in network.layers[1:]:  # a chain: every layer after the input feeds the next
            x = layer(x)
        branches.append(x)
    logits = keras.layers.Average(name="flip_average")(branches)
    return keras.Model(inputs, logits, name="emotion_cnn_flip_average")


def with_calibrated_softmax(network: keras.Model, labels: Sequence[str], temperature: float,
                            landmarks: Sequence[Sequence[float]] | None = None) -> keras.Model:
    """The product model: the network followed by a temperature-scaled softmax (and its face geometry)."""
    head = CalibratedSoftmax(labels, temperature, landmarks, name="probabilities")
    return keras.Model(network.inputs, head(network.outputs[0]), name="emotiontrack")


def load_model(path: str | Path) -> keras.Model:
    """Load a product model saved by `emotiontrack train`; raise ModelError on anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; all mean the same here.
        raise ModelError(f"cannot load model {path}: {exc}") from exc
    if not isinstance(model.layers[-1], CalibratedSoftmax):
        raise ModelError(f"{path} is not an emotiontrack model (no CalibratedSoftmax head)")
    return model


def model_labels(model: keras.Model) -> list[str]:
    return list(model.layers[-1].labels)
