"""Ctrl-C and SIGTERM in two phases.

While a command starts (imports, model loading) it has written nothing, and third-party imports may
swallow a KeyboardInterrupt (a bare `except` at import time, an exception raised inside `__del__`): the
process exits at once, quietly. Once a command starts writing outputs, the signals become exceptions, so
that cleanup runs (`main` maps them to exit statuses 130 and 143). A signal the parent process ignores
stays ignored throughout.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs exactly as for Ctrl-C."""


def _exit_now(signum, frame) -> None:
    os.write(2, b"emotiontrack: interrupted\n" if signum == signal.SIGINT else b"emotiontrack: terminated\n")
    os._exit(EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED)  # nothing written: nothing to clean up


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def handle(signum: int, handler: Callable[[int, FrameType | None], Any]) -> None:
    """Install `handler`, unless the signal is ignored: a parent that ignores it (a shell script starting a
    job in the background ignores SIGINT) means this process to survive it."""
    if signal.getsignal(signum) is not signal.SIG_IGN:
        signal.signal(signum, handler)


def exit_at_once() -> None:
    """While starting: Ctrl-C and SIGTERM end the process immediately."""
    handle(signal.SIGINT, _exit_now)
    handle(signal.SIGTERM, _exit_now)


def clean_up_on_signals() -> None:
    """From the first output on: Ctrl-C raises KeyboardInterrupt and SIGTERM `Terminated`."""
    handle(signal.SIGINT, signal.default_int_handler)
    handle(signal.SIGTERM, _raise_terminated)
