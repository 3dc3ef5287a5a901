"""A live capture's rows while it runs: Parquet parts that `pandas.read_parquet(folder)` reads as one table.

`LiveParts` is a frame sink (stages/classify_worker.py): it keeps the rows of the analysed frames pushed to
it and writes them as `part-000001.parquet`, `part-000002.parquet`, ... into its folder, each under a hidden
temporary name first (readers skip names starting with "."), at least every `flush_s` seconds while rows
wait (a thread of its own writes them when no frame comes: the last rows before a stream stalls are not held
until the capture ends). A part has the timeline's raw columns (outputs/timeline.py TIMELINE_SCHEMA: no smoothed ones, which
need the frames after a row) and the capture's `started_at` in its metadata. The first part is written at
the first flush even without rows, so the folder reads as an empty table from early on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from emotiontrack.outputs.timeline import to_table, write_parquet
from emotiontrack.types import Faces, Frame


class LiveParts:
    """See the module's docstring. `written_latency_s`: per row, seconds from its frame's arrival to its part."""

    wants_all_frames = False
    optional = False

    def __init__(self, folder: Path, video: str, flush_s: float, metadata: Callable[[], dict[str, object]],
                 clock: Callable[[], float] = time.monotonic):
        self.folder, self.video, self.flush_s, self.metadata, self.clock = folder, video, flush_s, metadata, clock
        self.parts = 0
        self.written_latency_s: list[float] = []
        self._pending: list[tuple[Faces, float]] = []  # rows not yet written, with their frame's arrival
        self._last_flush = clock()
        self._lock = threading.Lock()  # pushes come from the classification worker, timed flushes from ours
        self._closed = threading.Event()
        self._timer = threading.Thread(target=self._flush_when_due, name="live-parts", daemon=True)
        self._timer.start()

    def push(self, frame: Frame, faces: Faces | None) -> None:
        with self._lock:
            if faces is not None:
                self._pending.append((faces, frame.arrived_s))
        self._flush_if_due()

    def _flush_when_due(self) -> None:
        while not self._closed.wait(min(1.0, self.flush_s / 4)):
            self._flush_if_due()

    def _flush_if_due(self) -> None:
        if self.clock() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write the pending rows as the next part (the first part even without rows)."""
        with self._lock:
            pending, self._pending = self._pending, []
            rows = [faces for faces, _ in pending if len(faces)]
            if rows or not self.parts:
                self.parts += 1
                write_parquet(to_table(self.video, rows, self.metadata()), self.folder / f"part-{self.parts:06d}.parquet")
                now = self.clock()
                self.written_latency_s += [now - arrived for faces, arrived in pending for _ in range(len(faces))]
            self._last_flush = self.clock()

    def close(self) -> None:
        """The last rows."""
        self._closed.set()
        self._timer.join()
        self.flush()

    def abort(self) -> None:
        """Written parts stay where they are: the capture decides what becomes of its folder."""
        self._closed.set()
