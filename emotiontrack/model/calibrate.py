"""The product model: temperature calibration, the face geometry, and the `.keras` file `train` writes."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from emotiontrack.files import atomic_file
from emotiontrack.geometry.align import FER2013_GEOMETRY, MIN_FACES_MEASURED, Geometry, find_landmarks, geometry_of
from emotiontrack.model.dataset import Split
from emotiontrack.model.evaluate import classification_report
from emotiontrack.model.landmarks import LandmarkDetector
from emotiontrack.model.network import TrainingNet, predict_logits

log = logging.getLogger(__name__)


def fit_temperature(logits: NDArray[np.float32], labels: NDArray[np.int64]) -> float:
    """The softmax temperature that minimises the negative log-likelihood on held-out data."""

    def nll(log_t: float) -> float:
        return -float(np.mean(log_softmax(logits / math.exp(log_t), axis=1)[np.arange(len(labels)), labels]))

    return math.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x)


GEOMETRY_SAMPLE = 1000  # training faces on which the canonical landmark positions are measured


def training_geometry(train_split: Split, detector: LandmarkDetector, seed: int = 0) -> tuple[Geometry, dict[str, Any]]:
    """Where the detector puts the landmarks of the training faces (align.find_landmarks, on a sample)."""
    picks = np.random.default_rng(seed).permutation(len(train_split))[:GEOMETRY_SAMPLE]
    return measured_geometry(find_landmarks(train_split.images[np.sort(picks)], detector.central_landmarks))


def measured_geometry(landmarks: NDArray) -> tuple[Geometry, dict[str, Any]]:
    """The canonical geometry of faces with these landmarks (n, 5, 2; NaN where none was found), or
    FER2013's where too few were found to measure it (e.g. the tests' textures)."""
    geometry, stats = geometry_of(landmarks)
    if stats["found"] < min(MIN_FACES_MEASURED, len(landmarks)):
        log.warning("landmarks found on only %d training images: the model gets FER2013's face geometry",
                    stats["found"])
        return FER2013_GEOMETRY, {**stats, "canonical": FER2013_GEOMETRY.to_json(), "fallback": "FER2013"}
    return geometry, stats


def calibrate_and_save(net: TrainingNet, config, classes: list[str], val_split: Split,
                       geometry: Geometry) -> dict[str, Any]:
    """Fit the softmax temperature on the validation split and write the product model to config.output,
    with the canonical face geometry that aligned crops map faces onto."""
    from emotiontrack.model.keras_model import keras_network, with_calibrated_softmax, with_flip_average

    network = keras_network(net)
    inference = with_flip_average(network) if config.flip_average else network
    # The temperature is fitted on the logits the product computes: fp32, as torchnet and Keras run it.
    logits = predict_logits(net, val_split.images, config.flip_average, bf16=False)
    temperature = fit_temperature(logits, val_split.labels)
    before = classification_report(softmax(logits, axis=1), val_split.labels, classes)
    after = classification_report(softmax(logits / temperature, axis=1), val_split.labels, classes)
    log.info("validation accuracy %.4f, macro-F1 %.4f; ECE %.4f before calibration, %.4f after (T=%.3f)",
             after["accuracy"], after["macro_f1"], before["ece"], after["ece"], temperature)
    product = with_calibrated_softmax(inference, classes, temperature, geometry.to_json())
    with atomic_file(config.output) as tmp:
        product.save(tmp)
    return {"config": config.to_json(), "temperature": temperature, "model": str(config.output),
            "val_size": len(val_split),
            "validation": {"accuracy": after["accuracy"], "macro_f1": after["macro_f1"],
                           "ece_before_calibration": before["ece"], "ece_after_calibration": after["ece"],
                           "nll_before_calibration": before["nll"], "nll_after_calibration": after["nll"]}}
