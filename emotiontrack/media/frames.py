"""Which frames are analysed, decided in one place, and their grouping into chunks.

`FrameSampler` takes the first frame of every 1/fps-second slot. `FrameSource` yields an input's frames
with a flag saying whether each is analysed: stills are all analysed; of a video, when something (the
annotated video) wants every frame, all frames are decoded and the sampler flags them; otherwise ffmpeg
itself passes on only the frames the sampler would take (VideoReader's `sample_fps`: the same slots), and
every frame it passes is analysed. A live source (media/live.py) flags its frames itself, as they arrive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from emotiontrack.errors import InputError
from emotiontrack.media.decode import VideoReader
from emotiontrack.media.stills import image_frames
from emotiontrack.types import Frame, StageTimes, VideoInfo

if TYPE_CHECKING:
    from emotiontrack.media.live import LiveReader


class FrameSampler:
    """Picks the first frame of every 1/fps-second slot; fps 0 (or None) takes every frame."""

    def __init__(self, fps: float | None):
        self.fps = fps or 0.0
        self._last_slot = -math.inf

    def take(self, time_s: float) -> bool:
        if self.fps <= 0 or not math.isfinite(time_s):
            return True
        slot = math.floor(time_s * self.fps + 1e-6)
        if slot <= self._last_slot:
            return False
        self._last_slot = slot
        return True


class FrameSource:
    """An input's frames, each with whether it is analysed. Use as a context manager (stops ffmpeg)."""

    def __init__(self, info: VideoInfo, sample_fps: float, keep_all: bool, window: tuple[float, float] | None = None,
                 live: LiveReader | None = None):
        self.info, self._live = info, live
        self.frames_read = 0  # frames (or stills) decoded, passed on or not
        self.decode_errors = 0
        self.cuts_s: list[float] = []  # shot cuts found, once the frames are read
        # Without a sink that wants every frame, ffmpeg drops the unanalysed ones: at 25 fps and 2 analysed a
        # second, 1 frame in 12 crosses the pipe.
        self._reader = None if info.is_stills or live else VideoReader(info, None if keep_all else sample_fps,
                                                                             window=window)
        self._sampler = FrameSampler(sample_fps if keep_all and not info.is_stills else 0)

    def chunks(self, size: int, times: StageTimes,
               on_frames: Callable[[int], None] | None = None) -> Iterator[list[tuple[Frame, bool]]]:
        """Frames with their flags, in groups holding `size` analysed frames (the last may hold fewer).
        `on_frames(n)` reports decoded frames as they are consumed; `times["decode"]` gets the waiting."""
        chunk: list[tuple[Frame, bool]] = []
        done = 0  # frames reported, counted from the first one decoded (a window starts mid-source)
        first: int | None = None
        for frame, take in _timed(self._flagged(), times):
            chunk.append((frame, take))
            self.frames_read += 1
            if take and sum(t for _, t in chunk) >= size:
                yield chunk
                chunk = []
            first = frame.index if first is None else first
            if on_frames:
                on_frames(frame.index - first + 1 - done)
            done = frame.index - first + 1
        if chunk:
            yield chunk
        if self.info.is_stills and self.frames_read == 0:  # an empty result would be published, and skipped forever
            raise InputError(f"{self.info.path}: none of its images could be read")
        reader = self._reader if self._reader is not None else self._live
        if reader is not None:  # it also counts the frames ffmpeg dropped
            self.frames_read, self.decode_errors, self.cuts_s = reader.frames_read, reader.decode_errors, reader.cuts_s
            if on_frames and not self._live:
                on_frames(reader.frames_read - done)

    def _flagged(self) -> Iterable[tuple[Frame, bool]]:
        """Each frame, and whether it is analysed."""
        if self._live is not None:
            return self._live
        return ((frame, self._sampler.take(frame.time_s))
                for frame in (self._reader if self._reader is not None else image_frames(self.info)))

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        if self._reader is not None:
            self._reader.close()


def _timed(frames: Iterable[tuple[Frame, bool]], times: StageTimes) -> Iterator[tuple[Frame, bool]]:
    iterator = iter(frames)
    while True:
        with times.measure("decode"):
            item = next(iterator, None)
        if item is None:
            return
        yield item
