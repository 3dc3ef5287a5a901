"""The one place that imports Keras (training and the model definition; `analyze` and `evaluate` run the
saved model with torch alone, see torchnet.py).

Keras runs on the torch backend unless the user set KERAS_BACKEND, so training needs no TensorFlow. torch
is imported first because TensorFlow 2.21 segfaults when it is imported before anything that loads triton
(tensorflow#124205).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402,F401  (must precede any TensorFlow import)
import keras  # noqa: E402

__all__ = ["keras"]
