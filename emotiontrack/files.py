"""Atomic files: every output is written under a temporary name beside its final one and renamed into
place only when complete, so a reader (or a re-run) never sees a partial file.

Temporary names are fresh (pid and random bits) and opened by the writer itself, so files get the
permissions the process's umask gives any new file; nothing changes the umask.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from emotiontrack.errors import OutputError


def temporary_path(final: Path) -> Path:
    """A fresh hidden path beside `final` (same folder, so the rename is atomic), ending like `final`
    (writers that pick their format by extension see the right one)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f".{final.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{final.suffix}")


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """`with atomic_file(path) as tmp:` write to tmp; on success it becomes `path`, on failure it is removed."""
    tmp = temporary_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    """UTF-8 text; a file name that is not UTF-8 (Latin-1 bytes) shows as an escape, not an error."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    return path


def write_jpeg(path: Path, rgb: NDArray[np.uint8], quality: int = 90) -> Path:
    try:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error:  # an empty or malformed image
        ok = False
    if not ok:
        raise OutputError(f"{path}: could not encode JPEG")
    return write_bytes(path, data.tobytes())


def make_private_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder in `parent` with the permissions a plain mkdir gives."""
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def check_output_dir(out: Path) -> None:
    """Fail at once if the output folder cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".emotiontrack-write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
