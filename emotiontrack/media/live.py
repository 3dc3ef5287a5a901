"""Live sources: network streams and capture devices, read as their frames arrive.

`LiveReader` (for the inputs media/sources.py calls live) starts ffmpeg on the source as soon as it is made, so
what arrives while the models load waits in ffmpeg (UDP in a large receive queue) instead of being lost. It
learns the frame size from ffmpeg's description of its output, and a thread drains ffmpeg's pipe at the
source's pace, never blocking it. Frames wait in a queue; when the analysis falls behind, those more than
`lag_s` late (behind the source's own pace) are skipped and counted; what came during start-up is all
analysed (up to STARTUP_BYTES of frames), then the analysis joins the source.
The capture ends when the source ends, sends nothing for `stall_s`, reaches `duration_s`, or `stop()` is
called (Ctrl-C); with `reconnect` a source that drops is opened again with back-off and its time goes on.
"""

from __future__ import annotations

import datetime
import logging
import math
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from emotiontrack.config import LiveOptions
from emotiontrack.errors import InputError
from emotiontrack.media.decode import DECODE_ERROR, SCENE_CUT, SCENE_THRESHOLD, SHOWINFO
from emotiontrack.media.frames import FrameSampler
from emotiontrack.media.tools import StderrTail, ffmpeg_path, pipe, start
from emotiontrack.types import Frame, VideoInfo

log = logging.getLogger(__name__)

UDP_FIFO_PACKETS = 500_000  # ffmpeg's UDP receive queue, in 188-byte packets (~94 MB: minutes of a camera stream)
STARTUP_BYTES = 512 * 2**20  # decoded frames held while the analysis works off the start-up backlog, at most
PROBE_US = "1000000"  # how much of the source ffmpeg reads to learn its streams (default 5 s): the start's delay
EXIT_WAIT_S = 3.0  # how long ffmpeg may take to end once asked to
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # waits between reconnection attempts
_OUTPUT_SIZE = re.compile(r"Stream #\d+:\d+.*: Video: rawvideo.*?, (\d+)x(\d+)")
_INPUT_FPS = re.compile(r"Stream #\d+:\d+.*: Video: .*?([\d.]+)k? (?:fps|tbr)")


def ffmpeg_input(url: str) -> list[str]:
    """ffmpeg's input arguments for a live source."""
    if url.startswith("/dev/video"):
        return ["-f", "v4l2", "-i", url]
    if url.lower().startswith("udp://"):  # a large receive queue, and a full one drops packets instead of failing
        extra = [f"{k}={v}" for k, v in (("fifo_size", UDP_FIFO_PACKETS), ("overrun_nonfatal", 1)) if f"{k}=" not in url]
        url += ("&" if "?" in url else "?") + "&".join(extra) if extra else ""
    return ["-i", url]


class LiveReader:
    """See the module's docstring. `info()` waits for the first video; iterating yields (frame, analysed)
    pairs until the capture ends; `facts()` says how it went. Use as a context manager (stops ffmpeg)."""

    def __init__(self, url: str, name: str, options: LiveOptions, sample_fps: float, keep_all: bool):
        self.url, self.name, self.options, self.sample_fps, self.keep_all = url, name, options, sample_fps, keep_all
        self.frames_read = self.decode_errors = self.reconnects = 0  # frames_read: every decoded frame
        self.skipped = 0  # analysed frames skipped because the analysis was behind
        self.dropped = 0  # other frames (drawn in the annotated video only) skipped for the same reason
        self.ended_by = ""
        self.cuts_s: list[float] = []  # shot cuts (a reconnection is one too), on the capture's clock
        self._shot = 0
        self.started_at: datetime.datetime | None = None  # UTC wall clock when the first frame arrived
        self._first_arrival = math.nan  # its time.monotonic()
        self._sampler = FrameSampler(sample_fps if keep_all else 0)  # without keep_all ffmpeg samples
        self._queue: deque[tuple[Frame, bool]] = deque()
        self._queued_bytes, self._finished = 0, False
        self._consumer_started = math.inf  # frames that came before the analysis began are all analysed
        self._anchor = -math.inf  # our clock at the source's time 0: the latest arrival minus its time_s
        self._error: InputError | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._info: VideoInfo | None = None
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._capture, name="live-capture", daemon=True)
        self._thread.start()

    # -- the consumer's side ------------------------------------------------------------------------------

    def info(self) -> VideoInfo:
        """The source's frame size and rate, once ffmpeg has decoded its first frame; InputError if no video
        comes (within `wait_s`, or before `stop()`)."""
        with self._changed:
            self._changed.wait_for(lambda: self._info is not None or self._finished)
        if self._info is None:
            raise self._error or InputError(f"{self.url}: stopped before any video arrived")
        return self._info

    def __iter__(self) -> Iterator[tuple[Frame, bool]]:
        self._consumer_started = time.monotonic()
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or self._finished)
                if not self._queue:
                    break
                self._skip_what_is_too_late()
                frame, analysed = self._queue.popleft()
                self._queued_bytes -= frame.pixels.nbytes
            yield frame, analysed
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """End the capture (from any thread, a signal handler too): what has arrived is still analysed."""
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # no pipe is touched: the capture thread may be reading from it

    def facts(self) -> dict[str, object]:
        """How the capture went, for the timeline's metadata."""
        return {"url": self.url, "started_at": self.started_at.isoformat() if self.started_at else None,
                "ended_by": self.ended_by, "frames_read": self.frames_read, "skipped_analysed_frames": self.skipped,
                "skipped_other_frames": self.dropped, "reconnects": self.reconnects, "lag_s": self.options.lag_s}

    def close(self) -> None:
        self.stop()
        self._thread.join(timeout=10)

    def __enter__(self) -> LiveReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the capture thread -------------------------------------------------------------------------------

    def _capture(self) -> None:
        """Connections one after another (with `reconnect`), then the end."""
        attempt = 0
        try:
            while True:
                outcome, got_frames = self._connection()
                if outcome in ("stopped", "duration") or not self.options.reconnect:
                    break
                attempt = 0 if got_frames else attempt + 1
                wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                log.warning("%s: %s; reconnecting in %.0f s", self.url, outcome, wait)
                if self._stop.wait(wait):
                    outcome = "stopped"
                    break
                self.reconnects += 1
            self.ended_by = outcome
        except Exception as exc:  # handed to the consumer, which raises it
            self._error = InputError(f"{self.url}: capture failed ({exc!r})")
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    def _command(self) -> list[str]:
        # scdet finds shot cuts on every decoded frame, showinfo_1 numbers each (its number is its place)
        filters = [f"scdet=threshold={SCENE_THRESHOLD}", "showinfo=checksum=0"]
        if self._info is not None:  # a reconnection keeps the first connection's frame size
            filters.append(f"scale={self._info.width}:{self._info.height}")
        else:  # I420 needs even sides: an odd last row or column is left out
            filters.append("crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0")
        if not self.keep_all:  # only the frames FrameSampler would take cross the pipe (as media/decode.py)
            slot = f"floor(%s*{float(self.sample_fps)!r}+1e-6)"
            filters.append(f"select='isnan(t)+isnan(prev_selected_t)+gte({slot % 't'}-{slot % 'prev_selected_t'},1)'"
                           ",showinfo=checksum=0")
        return [ffmpeg_path(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info",
                "-fflags", "+discardcorrupt", "-analyzeduration", PROBE_US, *ffmpeg_input(self.url), "-map", "0:v:0", "-vf", ",".join(filters),
                "-f", "rawvideo", "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", "pipe:"]

    def _connection(self) -> tuple[str, bool]:
        """One ffmpeg process on the source, read until it ends; how it ended, and whether frames came."""
        connection = _Connection(self._command(), self)
        self._proc = connection.proc
        if self._stop.is_set():
            connection.proc.terminate()
        reader = threading.Thread(target=connection.read, name="live-read", daemon=True)
        reader.start()
        outcome = connection.watch(reader)
        if self._info is None and not self.options.reconnect and outcome != "stopped":
            reason = connection.stderr.last_error() if outcome == "failed" else f"{outcome} (--wait-s)"
            self._error = InputError(f"{self.url}: {reason}")
        return outcome, connection.frames > 0

    def _header(self, width: int, height: int, fps: Fraction) -> None:
        """A connection's first frame is decoded. ffmpeg held what came while it probed the source (and while
        the models loaded): that backlog now comes at once, and is worked off before frames are skipped."""
        with self._changed:
            if self._info is None:
                self._info = VideoInfo(Path(self.name), width, height, fps, math.nan, None, url=self.url)
            self._changed.notify_all()

    def _arrived(self, frame_index: int, pts_time: float, pixels: np.ndarray, offset_s: float, shot: int) -> bool:
        """Queue a frame that came from ffmpeg; False once `duration_s` is reached."""
        now = time.monotonic()
        if self.started_at is None:
            self.started_at, self._first_arrival = datetime.datetime.now(datetime.UTC), now
        time_s = offset_s + pts_time
        if self.options.duration_s is not None and time_s >= self.options.duration_s:
            return False
        if shot != self._shot:
            self._shot = shot
            self.cuts_s.append(time_s)
        frame = Frame(frame_index, time_s, pixels, is_i420=True, arrived_s=now, shot=shot)
        analysed = self._sampler.take(time_s)
        with self._changed:
            self._anchor = max(self._anchor, now - time_s)
            self._queue.append((frame, analysed))
            self._queued_bytes += pixels.nbytes
            self._skip_what_is_too_late()
            self._changed.notify_all()
        return True

    def _skip_what_is_too_late(self) -> None:
        """The analysis is behind: skip the oldest frames more than `lag_s` late, but not those that came before
        the analysis began (what ffmpeg and the queue held while the models loaded: beyond STARTUP_BYTES only).
        Called with `_changed` held."""
        while len(self._queue) > 1 and (self._queued_bytes > STARTUP_BYTES or self._is_late(self._queue[0][0])):
            frame, analysed = self._queue.popleft()
            self._queued_bytes -= frame.pixels.nbytes
            if analysed:
                self.skipped += 1
            else:
                self.dropped += 1

    def _is_late(self, frame: Frame) -> bool:
        """Whether the source reached this frame's time more than `lag_s` ago (the anchor follows the source's
        pace, so a burst of frames ffmpeg held is not late), for a frame that came after the analysis began."""
        return frame.arrived_s > self._consumer_started and time.monotonic() - (self._anchor + frame.time_s) > self.options.lag_s

    def _offset_s(self) -> float:
        """Where a new connection's time 0 lies on the capture's clock: at its first frame's arrival."""
        return 0.0 if self.started_at is None else time.monotonic() - self._first_arrival


class _Connection:
    """One ffmpeg process on the source: `read` (a thread) turns its pipe into frames, `watch` ends it when
    the capture is stopped or the source stalls."""

    def __init__(self, args: list[str], capture: LiveReader):
        self.capture, self.frames = capture, 0
        self.size: tuple[int, int] | None = None
        self.fps = Fraction(25)
        self.header = threading.Event()
        self.ended_by = ""
        self._timestamps: deque[tuple[int, float, int]] = deque()  # (index, time, shot) of frames on their way
        self._decoded: deque[tuple[str, int, int]] = deque(maxlen=256)  # (pts, index, shot) of the latest frames
        # A new connection starts a new shot; scdet's cuts within it add to that.
        self.shot = capture._shot + (1 if capture.frames_read else 0)
        self._got_timestamp = threading.Condition()
        self.last_data = time.monotonic()
        self.proc = start(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.stderr = StderrTail(pipe(self.proc.stderr), self._on_line)

    def _on_line(self, line: str) -> None:
        match = SHOWINFO.search(line)
        if match:
            self.last_data = time.monotonic()
            stage, pts = int(match[1]), match[3]
            time_s = math.nan if pts == "NOPTS" else float(match[4])
            if stage == 1:  # every decoded frame: its index in the capture
                self.capture.frames_read += 1
                index, shot = self.capture.frames_read - 1, self.shot
                if not self.capture.keep_all:  # remembered for the frames `select` passes on (showinfo_4)
                    self._decoded.append((pts, index, shot))
                    return
            else:
                index, shot = next(((i, s) for p, i, s in reversed(self._decoded) if p == pts),
                                   (self.capture.frames_read - 1, self.shot))
            with self._got_timestamp:
                self._timestamps.append((index, time_s, shot))
                self._got_timestamp.notify()
        elif SCENE_CUT.search(line):
            self.shot += 1
        elif self.size is None and (size := _OUTPUT_SIZE.search(line)):
            self.size = (int(size[1]), int(size[2]))
            self.header.set()
        elif (fps := _INPUT_FPS.search(line)) and "rawvideo" not in line:
            self.fps = Fraction(fps[1]).limit_denominator(1001) or Fraction(25)
        elif DECODE_ERROR.search(line):
            self.capture.decode_errors += 1

    def read(self) -> None:
        """Frames from ffmpeg's pipe into the capture's queue, until the pipe ends or `duration_s` is reached."""
        while not self.header.wait(0.2):
            if self.proc.poll() is not None:
                return
        assert self.size is not None
        self.capture._header(*self.size, self.fps)
        info, stdout = self.capture.info(), pipe(self.proc.stdout)
        offset_s = math.nan
        while True:
            pixels = np.empty((info.height * 3 // 2, info.width), np.uint8)
            if not _read_exactly(stdout, pixels):
                return
            with self._got_timestamp:  # showinfo's line may come a moment after the frame's bytes
                self._got_timestamp.wait_for(lambda: bool(self._timestamps), timeout=5)
                index, time_s, shot = (self._timestamps.popleft() if self._timestamps
                                       else (self.capture.frames_read, math.nan, self.shot))
            if not math.isfinite(time_s):
                time_s = self.frames / float(self.fps)
            if math.isnan(offset_s):
                offset_s = self.capture._offset_s()
            self.frames += 1
            if not self.capture._arrived(index, time_s, pixels, offset_s, shot):
                self.ended_by = "duration"
                self.proc.terminate()
                return

    def watch(self, reader: threading.Thread) -> str:
        """Wait for the connection to end; end it on `stop()` or when nothing comes for too long."""
        options, started = self.capture.options, time.monotonic()
        outcome = ""
        while reader.is_alive():
            reader.join(0.2)
            quiet = time.monotonic() - (self.last_data if self.frames else started)
            limit = options.stall_s if self.frames else options.wait_s
            if self.capture._stop.is_set():
                outcome = "stopped"
            elif quiet > limit and reader.is_alive():
                outcome = f"no video for {limit:.0f} s"
            else:
                continue
            self.proc.terminate()
            reader.join(5)
            if reader.is_alive():
                self.proc.kill()
        try:  # ffmpeg ends on SIGTERM, unless it is stuck writing frames nobody reads any more
            self.proc.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.join(timeout=5)
        if self.ended_by:
            return self.ended_by
        if outcome:
            return outcome
        return "ended" if self.frames else "failed"


def _read_exactly(stream, buffer: np.ndarray) -> bool:
    view, filled = memoryview(buffer.data), 0
    while filled < buffer.nbytes:
        n = stream.readinto(view[filled:])
        if not n:
            return False
        filled += n
    return True
