"""facenet-pytorch's MTCNN, imported without torch._dynamo.

torchvision 0.29's roi_align imports torch._dynamo (1.7-3 s, about a third of analyze's start-up:
`python benchmarks/micro.py startup`) for one function that only its deterministic roi_align calls, which
MTCNN never does. While facenet-pytorch imports torchvision, that module's name resolves to a stand-in
whose function imports the real one on its first call, as does asking the stand-in for anything else: the
behaviour is the same, paid for only by code that uses it.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_dynamo_deferred() -> Iterator[None]:
    """While facenet-pytorch imports torchvision: torchvision 0.29's roi_align imports torch._dynamo (1.7-3 s,
    about a third of analyze's start-up: `python benchmarks/micro.py startup`) for one function that only its
    deterministic roi_align calls, which MTCNN never does. Meanwhile that module's name resolves to a stand-in whose function imports
    the real one on its first call, as does asking the stand-in for anything else: the behaviour is the same,
    paid for only by code that uses it."""
    name = "torch._dynamo.utils"
    if name in sys.modules:
        yield
        return
    stand_in = types.ModuleType(name)

    def real_module() -> types.ModuleType:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return importlib.import_module(name)

    def is_compile_supported(device_type):
        return real_module().is_compile_supported(device_type)

    def any_other(attr: str):
        if attr.startswith("__"):  # the import system's probes (__path__, ...): a plain module has none
            raise AttributeError(attr)
        return getattr(real_module(), attr)

    setattr(stand_in, "is_compile_supported", is_compile_supported)  # noqa: B010  (a module's attributes)
    setattr(stand_in, "__getattr__", any_other)  # noqa: B010
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]




with torch_dynamo_deferred():
    from facenet_pytorch import MTCNN
    from facenet_pytorch.models.utils.detect_face import bbreg

__all__ = ["MTCNN", "bbreg", "torch_dynamo_deferred"]
