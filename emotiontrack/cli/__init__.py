"""Command line: `emotiontrack analyze | train | evaluate` (main.py, one module per command).

This module stays light: `run`, the console script, is imported before anything else, so that a Ctrl-C
while the heavy libraries load (the first seconds) ends the program quietly with status 130.
"""

from __future__ import annotations

import logging
import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"emotiontrack: interrupted\n")
    os._exit(130)  # nothing was started: nothing to clean up


def run() -> None:
    """The console script: `main`, then an exit that skips tearing down torch's ~1M objects (~0.4 s).
    Every output is closed by then; only the standard streams need flushing."""
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from emotiontrack.cli.main import main

    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
