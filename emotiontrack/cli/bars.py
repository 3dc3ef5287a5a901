"""What `analyze` shows: a progress bar per input beside the overall one, each outcome, and the closing summary."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress, TaskID


class InputBars:
    """A progress bar per input (frames) beside the overall one (inputs)."""

    def __init__(self, progress: Progress, inputs: int, sources: dict[Path, str]) -> None:
        self.display, self.sources = progress, sources
        self.tasks: dict[Path, TaskID] = {}
        self.overall = progress.add_task("inputs", total=inputs)

    def _task(self, path: Path):
        if path not in self.tasks:
            self.tasks[path] = self.display.add_task(_short(self.sources.get(path) or str(path)), total=None)
        return self.tasks[path]

    def started(self, path: Path, total: int | None) -> None:
        self.display.update(self._task(path), total=total, completed=0)

    def advance(self, path: Path, n: int) -> None:
        self.display.advance(self._task(path), n)

    def progress(self, path: Path, done: int, total: int | None) -> None:  # cluster/engine.py's RunEvents
        self.display.update(self._task(path), total=total, completed=done)

    def finished(self, path: Path, outcome) -> None:
        task = self._task(path)
        # rich's `tasks` is a list in order of creation, not indexed by id: look the task up by its id
        done = next((t.completed for t in self.display.tasks if t.id == task), 0) or 1
        self.display.update(task, total=done, completed=done)
        say_outcome(self.display.console, outcome)
        self.display.advance(self.overall)


def say_outcome(console: Console, outcome) -> None:
    if not outcome.ok:
        console.print(f"[red]failed:[/] {outcome.error}", highlight=False, soft_wrap=True)
    elif outcome.skipped:
        console.print(f"skipped {outcome.name}: already done with this model and settings (--overwrite redoes it)",
                      highlight=False, soft_wrap=True)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def print_summary(console: Console, outcomes: list, wall_s: float, remote) -> None:
    done = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    skipped = sum(o.skipped for o in done)
    console.print(
        f"{len(done)} done{f' ({skipped} already complete)' if skipped else ''}, {len(failed)} failed; "
        f"{sum(o.faces for o in done)} faces; "
        f"{sum(o.video_s for o in done):.1f} s of video in {wall_s:.1f} s wall time", highlight=False, soft_wrap=True)
    for o in done:
        where = remote.child(o.out_dir.name) if remote else o.out_dir
        console.print(f"  ok      {o.name} -> {where}", highlight=False, soft_wrap=True)
    for o in failed:
        console.print(f"  FAILED  {o.error}", highlight=False, soft_wrap=True)
