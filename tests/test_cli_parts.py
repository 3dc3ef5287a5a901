"""Pieces of the command line tested in this process: the progress bars, and signals the parent ignores."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from emotiontrack.batch import Outcome
from emotiontrack.cli.bars import InputBars


def test_a_finished_input_completes_its_own_bar_whatever_tasks_were_removed():
    """rich keeps its tasks in a list in creation order: a bar is found by its id, not by list position."""
    progress = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    bars = InputBars(progress, 3, {})
    first, second = Path("first.mp4"), Path("second.mp4")
    bars.started(first, 10)
    bars.started(second, 20)
    bars.advance(second, 7)
    progress.remove_task(bars.tasks[first])  # ids no longer match list positions
    bars.finished(second, Outcome(second, Path("out")))
    task = next(t for t in progress.tasks if t.id == bars.tasks[second])
    assert task.completed == task.total == 7
    assert next(t for t in progress.tasks if t.id == bars.overall).completed == 1


@pytest.fixture
def sigint_ignored():
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, saved)


def test_the_ray_driver_leaves_an_ignored_ctrl_c_ignored(sigint_ignored):
    """While the driver waits on Ray, signals are deferred; one the parent ignored must stay ignored, not come
    back as a KeyboardInterrupt."""
    from emotiontrack.cluster.session import DeferredSignals

    with DeferredSignals() as signals:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        signals.check()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_the_ray_driver_defers_ctrl_c_to_its_callers_handler():
    from emotiontrack.cluster.session import DeferredSignals

    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with DeferredSignals() as signals:
            os.kill(os.getpid(), signal.SIGINT)  # recorded, not raised while Ray's core might be waiting
            with pytest.raises(KeyboardInterrupt):
                signals.check()
    finally:
        signal.signal(signal.SIGINT, saved)


def test_the_command_lines_handlers_leave_ignored_signals_ignored(sigint_ignored):
    from emotiontrack.cli.signals import clean_up_on_signals, exit_at_once

    saved_term = signal.getsignal(signal.SIGTERM)
    try:
        exit_at_once()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        clean_up_on_signals()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not saved_term  # not ignored: handled
    finally:
        signal.signal(signal.SIGTERM, saved_term)


def test_building_the_command_line_imports_no_torch():
    """Parsing answers at once (--help, option errors) and a live capture's ffmpeg starts ~0.5 s in."""
    import subprocess
    import sys

    code = "import sys; from emotiontrack.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
