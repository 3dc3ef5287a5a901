"""The progress display every command uses: rich bars on stderr, one line per task."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bars(console: Console, *extra: TextColumn, transient: bool = False) -> Progress:
    """Description, bar, done/total, `extra` columns, elapsed and remaining time."""
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), *extra,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=transient)
