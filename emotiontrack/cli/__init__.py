"""Command line: `emotiontrack analyze | train | evaluate` (main.py, one module per command).

This module stays light: `run`, the console script, is imported before anything else, so that a Ctrl-C
while the heavy libraries load (the first seconds) ends the program quietly with status 130 (signals.py).
"""

from __future__ import annotations

import logging
import os
import sys

from emotiontrack.cli.signals import exit_at_once


def run() -> None:
    """The console script: `main`, then an exit that skips tearing down torch's ~1M objects (~0.4 s).
    Every output is closed by then; only the standard streams need flushing."""
    exit_at_once()  # until the command starts writing (signals.py)
    from emotiontrack.cli.main import main

    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
