"""Process-wide settings an analysis applies, the same way for the CLI and the Python API.

- OpenMP threads that spin while waiting starve the ffmpeg processes working beside torch (10x slower on
  2 cores): OMP_WAIT_POLICY=PASSIVE, set when the package is imported, before torch loads OpenMP.
- Importing torch, torchvision, scipy, pandas and matplotlib creates millions of long-lived objects; the
  garbage collector's full passes over them while they load cost ~1.2 s of every run (of ~7 s of imports):
  `loading()` keeps the collector off meanwhile, then freezes what was loaded (it lives as long as the
  process), so later collections do not walk it again and again. Only the console script uses it: freezing
  is process-wide, and a program calling the Python API keeps its own heap as it was.
- torch's CPU threads for MTCNN and the CNN: `use_threads` (ffmpeg decodes and encodes in its own processes).
- bf16 only where the CPU computes it (`cpu_has_bf16`): elsewhere oneDNN emulates it, ~10x slower than float32.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) below the first with bf16 dot products: with one of
# them set, bf16 is emulated whatever the CPU has (how an AVX2-only CPU is reproduced on any x86 machine).
ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether oneDNN computes bf16 natively here (AVX512-BF16 or AMX, not capped by ONEDNN_MAX_CPU_ISA);
    elsewhere it emulates it, slower than float32 (a training step of vgg-l: ~50 s in bf16 against ~4 s in
    float32 on an AVX2-only EPYC; analyze ~4x slower)."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ISAS_WITHOUT_BF16:
        return False
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))
