"""Decode a video into frames with their source index and presentation time.

Videos are streamed through ffmpeg (ffmpeg-python builds the command): decoded frames come out on a
pipe, rotated as the container says, and ffmpeg's `showinfo` filter reports each frame's index and
timestamp on stderr. When only sampled frames are wanted, ffmpeg's `select` filter drops the others
before they cross the pipe. A reader thread keeps a bounded queue of frames so decoding overlaps detection;
a watchdog kills ffmpeg if it stalls.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator

import cv2
import ffmpeg
import numpy as np

from emotiontrack.errors import DecodeError
from emotiontrack.media.tools import (
    INPUT,
    StderrTail,
    codec_threads,
    compile_command,
    media_path,
    pipe,
    start,
    stop_process,
)
from emotiontrack.types import Frame, VideoInfo

log = logging.getLogger(__name__)

# ffmpeg's scene-change detector logs each shot cut it finds ("lavfi.scd.score: 45.5, lavfi.scd.time: 6")
SCENE_CUT = re.compile(r"Parsed_scdet_\d+.*lavfi\.scd\.time:\s*(-?[\d.]+)")
# scdet's score is the mean absolute difference between consecutive frames, in percent, past what the
# frames before changed: 10 is its own default. A hard cut to another shot (another background) scores
# 10-60 on our test material; faces changing in place, moving or turning stay under 3.
SCENE_THRESHOLD = 10.0
SHOWINFO = re.compile(r"Parsed_showinfo_(\d+).*\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:(\S+)")
DECODE_ERROR = re.compile(r"error while decoding|corrupt|invalid nal|concealing|missing picture|decode_slice", re.I)
QUEUE_BYTES = 32 * 2**20  # frames decoded ahead of the pipeline, at most (96 MB, with 128 MB for the video's inbox, peaked ~60 MB higher, at the same speed: docs/performance.md)


class VideoReader:
    """Iterate a video's frames from an ffmpeg subprocess. Use as a context manager (kills ffmpeg).

    With `sample_fps`, ffmpeg passes on only the frames FrameSampler(sample_fps) takes (the first of each
    1/sample_fps-second slot, and any frame without a timestamp); the others never cross the pipe, which
    halves ffmpeg's work at 2 fps. `frames_read` counts every decoded frame either way.

    With `window` (start_s, end_s; inf: to the end), only the frames shown in that span of the source are decoded (ffmpeg seeks
    to the keyframe before it and drops what precedes start_s); their times stay the source's, and their
    indices are those of a single pass at the source's constant rate (time x fps)."""

    def __init__(self, info: VideoInfo, sample_fps: float | None = None, stall_timeout_s: float = 60.0,
                 window: tuple[float, float] | None = None):
        self.info, self.stall_timeout_s, self.window = info, stall_timeout_s, window
        self._path_text = media_path(info.path)
        self.decode_errors = 0  # decoder complaints (corrupt packets, concealed slices)
        self.frames_read = 0  # every decoded frame, passed on or not
        # (pts, index, time) of the latest decoded frames: a sampled frame's index is looked up here by its pts
        self._decoded: deque[tuple[str, int, float, int]] = deque(maxlen=256)
        self._timestamps: queue.Queue[tuple[int, float, int]] = queue.Queue()  # (index, time, shot) per frame passed on
        self.cuts_s: list[float] = []  # times of the shot cuts found (the first frame of each new shot)
        self._frames: queue.Queue[Frame | BaseException | None] = queue.Queue(
            max(2, QUEUE_BYTES // (info.width * info.height * 3))
        )
        self._sampled = bool(sample_fps)
        # Frames cross the pipe and are kept as I420 (half the bytes of RGB; pipe copies cost as much CPU as
        # decoding here). Odd frame sizes have no exact I420 layout: RGB then.
        self._i420 = info.width % 2 == 0 and info.height % 2 == 0
        # Shot cuts are found on every decoded frame (scdet, before any frame is dropped; ~0 cost beside decoding);
        # showinfo without checksums (they cost more than decoding the frame) then numbers each frame.
        filters = f"scdet=threshold={SCENE_THRESHOLD},showinfo=checksum=0"
        if sample_fps:  # showinfo_1 sees every decoded frame, showinfo_3 the ones passed on
            slot = f"floor(%s*{float(sample_fps)!r}+1e-6)"
            filters += (f",select='isnan(t)+isnan(prev_selected_t)+gte({slot % 't'}-{slot % 'prev_selected_t'}\\,1)'"
                        ",showinfo=checksum=0")
        seek = {} if window is None else {"ss": repr(window[0])}
        if window is not None and math.isfinite(window[1]):
            seek["t"] = repr(window[1] - window[0])
        stream = (
            ffmpeg.input(INPUT, threads=codec_threads(info.width, info.height), **seek,
                         **({} if info.autorotate else {"noautorotate": None}))
            .output("pipe:", format="rawvideo", pix_fmt="yuv420p" if self._i420 else "rgb24", vf=filters,
                    map=f"0:{info.stream}", fps_mode="passthrough")
            .global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "info",
                         *(["-copyts"] if window else []))  # the source's timestamps, not the seek's
        )
        args = compile_command(stream, {INPUT: info.path})
        self._proc = start(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._stdout = pipe(self._proc.stdout)
        self._stderr = StderrTail(pipe(self._proc.stderr), self._on_stderr_line)
        self._stopped = threading.Event()
        self._reader = threading.Thread(target=self._read_frames, daemon=True)
        self._reader.start()

    def _on_stderr_line(self, line: str) -> None:
        match = SHOWINFO.search(line)
        if match:
            stage, index, pts = int(match[1]), int(match[2]), match[3]
            time_s = math.nan if pts == "NOPTS" else float(match[4])
            shot = len(self.cuts_s)  # scdet logs a cut before showinfo logs that frame
            if stage == 1:
                # showinfo's own count restarts whenever the filter graph is rebuilt (a resolution change
                # mid-stream, as in conferencing recordings): the source index is this count of decoded frames.
                index = self.frames_read if self.window is None or pts == "NOPTS" else round(time_s * float(self.info.fps))
                self.frames_read += 1
                if self._sampled:
                    self._decoded.append((pts, index, time_s, shot))
                else:
                    self._timestamps.put((index, time_s, shot))
            else:  # a sampled frame: its source index is the one showinfo_1 gave the latest frame with its pts
                self._timestamps.put(next(((i, t, s) for p, i, t, s in reversed(self._decoded) if p == pts),
                                          (index, time_s, shot)))
        elif cut := SCENE_CUT.search(line):
            self.cuts_s.append(float(cut[1]))
        elif DECODE_ERROR.search(line.replace(self._path_text, "")):  # "corrupt.mp4" is no decoder error
            self.decode_errors += 1

    def _read_frames(self) -> None:
        width, height = self.info.width, self.info.height
        shape = (height * 3 // 2, width) if self._i420 else (height, width, 3)
        try:
            while not self._stopped.is_set():
                pixels = np.empty(shape, np.uint8)
                if not self._read_exactly(pixels):
                    break
                index, time_s, shot = self._timestamps.get(timeout=self.stall_timeout_s)
                time_s = time_s if math.isfinite(time_s) else index / float(self.info.fps)
                if self._i420 and self._sampled:  # every frame is analysed: convert here, beside the detector
                    rgb = np.asarray(cv2.cvtColor(pixels, cv2.COLOR_YUV2RGB_I420), np.uint8)
                    self._put(Frame(index, time_s, rgb, shot=shot))
                else:  # frames for the annotated video stay I420 until something needs RGB
                    self._put(Frame(index, time_s, pixels, is_i420=self._i420, shot=shot))
            self._put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _read_exactly(self, buffer: np.ndarray) -> bool:
        """Fill `buffer` with the next frame's bytes; False at the end of the stream (a partial frame is dropped)."""
        view, filled = memoryview(buffer.data), 0
        while filled < buffer.nbytes:
            n = self._stdout.readinto(view[filled:])  # type: ignore[attr-defined]
            if not n:
                return False
            filled += n
        return True

    def _put(self, item) -> None:
        while not self._stopped.is_set():
            try:
                self._frames.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        last_activity = time.monotonic()
        while True:
            try:
                item = self._frames.get(timeout=1.0)
            except queue.Empty:
                idle = time.monotonic() - max(last_activity, self._stderr.last_activity)
                if idle > self.stall_timeout_s:
                    self.close()
                    raise DecodeError(f"{self.info.path}: ffmpeg stalled for {idle:.0f} s; gave up") from None
                continue
            last_activity = time.monotonic()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise DecodeError(f"{self.info.path}: decoding failed ({item!r})") from item
            yield item
        self._proc.wait()
        self._stderr.join(timeout=5)
        if self.frames_read == 0:
            raise DecodeError(f"{self.info.path}: no decodable video frames ({self._stderr.last_error()})")
        if self._proc.returncode != 0:
            log.warning("%s: ffmpeg ended with an error after %d frames: %s", self.info.path, self.frames_read, self._stderr.last_error())

    def close(self) -> None:
        self._stopped.set()
        stop_process(self._proc)
        self._reader.join(timeout=5)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
