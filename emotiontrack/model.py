"""The emotion CNN, shared by `train`, `evaluate` and `analyze`.

A VGG-style network for 48x48 grayscale faces (FER2013's format): Conv2D / BatchNorm / ReLU blocks with
MaxPooling2D and Dropout, then Dense layers. The network outputs logits; the saved product model ends in
`CalibratedSoftmax`, which divides by a temperature fitted on validation data and carries the class
names, so a `.keras` file is self-describing. Everything is backend-neutral Keras 3 (`keras.ops` only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from emotiontrack._keras import keras
from emotiontrack.errors import ModelError
from emotiontrack.types import INPUT_SIZE

# (filters, conv layers) per block; one conv at full resolution keeps the 48x48 stage cheap.
BLOCKS: tuple[tuple[int, int], ...] = ((32, 1), (64, 2), (128, 2), (256, 2))


@keras.saving.register_keras_serializable(package="emotiontrack")
class CalibratedSoftmax(keras.layers.Layer):
    """softmax(logits / temperature); stores the class names of the model's outputs."""

    def __init__(self, labels: Sequence[str], temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.labels = [str(label) for label in labels]
        self.initial_temperature = float(temperature)

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
        return {**super().get_config(), "labels": self.labels, "temperature": temperature}


@keras.saving.register_keras_serializable(package="emotiontrack")
class HorizontalFlip(keras.layers.Layer):
    """Mirror images left-right (for test-time flip averaging: a face and its mirror show one emotion)."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)


def build_network(n_classes: int, dropout: float = 0.25, bn_momentum: float = 0.99) -> keras.Model:
    """The trainable network: raw 0-255 grayscale (48, 48, 1) in, logits (n_classes,) out."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="face")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    for filters, n_convs in BLOCKS:
        for _ in range(n_convs):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
            x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    logits = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="emotion_cnn")


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


def with_calibrated_softmax(network: keras.Model, labels: Sequence[str], temperature: float) -> keras.Model:
    """The product model: the network followed by a temperature-scaled softmax."""
    head = CalibratedSoftmax(labels, temperature, name="probabilities")
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
