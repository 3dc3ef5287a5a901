"""Process-wide settings an analysis applies, the same way for the CLI and the Python API.

- OpenMP threads that spin while waiting starve the ffmpeg processes working beside torch (10x slower on
  2 cores): OMP_WAIT_POLICY=PASSIVE, set when the package is imported, before torch loads OpenMP.
- Importing torch, torchvision, scipy, pandas and matplotlib creates millions of long-lived objects; the
  garbage collector's full passes over them while they load cost ~1.2 s of every run (of ~7 s of imports):
  `loading()` keeps the collector off meanwhile, then freezes what was loaded (it lives as long as the
  process), so later collections do not walk it again and again.
- torch's CPU threads for MTCNN and the CNN: `use_threads` (ffmpeg decodes and encodes in its own processes).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager


def quiet_openmp() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextmanager
def loading() -> Iterator[None]:
    """No garbage collection while heavy libraries and models load; what they made is frozen afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def use_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
