"""The one place that imports Keras.

Keras runs on the torch backend unless the user set KERAS_BACKEND: torch is loaded anyway for MTCNN,
so `analyze` never pays for TensorFlow. torch is imported first because TensorFlow 2.21 segfaults when
it is imported before anything that loads triton (tensorflow#124205).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402,F401  (must precede any TensorFlow import)
import keras  # noqa: E402

__all__ = ["keras"]
