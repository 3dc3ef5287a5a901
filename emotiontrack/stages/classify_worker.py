"""The classification worker: the CNN on one chunk of frames beside the detection of the next.

`ClassifyWorker.submit(chunk, tracked)` classifies a chunk's tracked faces, records them in the result,
then hands the chunk's frames (with their faces, None for frames not analysed) to the sinks, on one worker
thread (torch releases the GIL). At most one chunk is in its hands, so the frames held stay bounded; its
errors are raised in the caller's thread by the next call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from emotiontrack.stages.classify import EmotionClassifier
from emotiontrack.types import Faces, Frame, VideoResult


class FrameSink(Protocol):
    """Receives every frame in order, with its faces if it was analysed (None otherwise): `push` for each,
    then `close` (the output is complete) or `abort` (stop, leaving nothing behind)."""

    wants_all_frames: bool  # False: only analysed frames are pushed
    optional: bool  # True: if it fails (OutputError), the input is published without its output

    def push(self, frame: Frame, faces: Faces | None) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class ClassifyWorker:
    """See the module's docstring. Use as a context manager (shuts the thread down)."""

    def __init__(self, classifier: EmotionClassifier, sinks: Sequence[FrameSink], result: VideoResult):
        self.classifier, self.sinks, self.result = classifier, sinks, result
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="classify")
        self._running: Future | None = None

    def submit(self, chunk: list[tuple[Frame, bool]], tracked: list[Faces]) -> None:
        self.wait()
        self._running = self._pool.submit(self._run, chunk, tracked)

    def wait(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.result()

    def _run(self, chunk: list[tuple[Frame, bool]], tracked: list[Faces]) -> None:
        times = self.result.times
        with times.measure("classify"):
            analysed = self.classifier.classify([frame.rgb for frame, take in chunk if take], tracked)
        self.result.faces.extend(analysed)
        done = time.monotonic()  # a live frame's emotions are known: how long after it arrived
        self.result.latency_s += [done - frame.arrived_s for frame, take in chunk if take and math.isfinite(frame.arrived_s)]
        results = iter(analysed)
        with times.measure("annotate"):
            for frame, take in chunk:
                faces = next(results) if take else None
                for sink in self.sinks:
                    if take or sink.wants_all_frames:
                        sink.push(frame, faces)

    def __enter__(self) -> ClassifyWorker:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
