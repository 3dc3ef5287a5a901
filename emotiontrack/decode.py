"""Decode inputs into frames with their source index and presentation time.

Videos are streamed through ffmpeg (ffmpeg-python builds the command): decoded frames come out on a
pipe, rotated as the container says, and ffmpeg's `showinfo` filter reports each frame's index and
timestamp on stderr. When only sampled frames are wanted, ffmpeg's `select` filter drops the others
before they cross the pipe. A reader thread keeps a bounded queue of frames so decoding overlaps detection;
a watchdog kills ffmpeg if it stalls. Image folders are read as a sequence of stills, sorted by name.
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
from fractions import Fraction
from pathlib import Path

import cv2
import ffmpeg
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emotiontrack._ffmpeg import StderrTail, codec_threads, ffmpeg_path, probe_json, start, stop_process
from emotiontrack.errors import DecodeError, InputError
from emotiontrack.types import Frame, VideoInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"}
_SHOWINFO = re.compile(r"Parsed_showinfo_(\d+).*\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:(\S+)")
_DECODE_ERROR = re.compile(r"error while decoding|corrupt|invalid nal|concealing|missing picture|decode_slice", re.I)
QUEUE_BYTES = 96 * 2**20  # frames decoded ahead of the pipeline, at most


def probe(path: Path) -> VideoInfo:
    """Describe a video file or an image folder; raise InputError/DecodeError if it cannot be analysed."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        return _probe_folder(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        read_image(path)  # fails here, in one line, if it does not decode
        return VideoInfo(path, 0, 0, Fraction(0), math.nan, 1, is_stills=True)
    try:
        with path.open("rb") as f:
            if not f.read(1):
                raise InputError(f"{path}: empty file (0 bytes)")
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise InputError(f"{path}: not a file") from None
    try:
        data = probe_json(path)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"{path}: ffprobe timed out") from None
    except subprocess.CalledProcessError as exc:
        reason = exc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DecodeError(f"{path}: not a readable video ({reason[-1].split(': ')[-1] if reason else 'unknown format'})") from None
    return _video_info(path, data)


def _video_info(path: Path, data: dict) -> VideoInfo:
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and not _is_cover_art(s)), None)
    if video is None:
        kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["nothing"]
        raise DecodeError(f"{path}: no video stream (contains {', '.join(kinds)})")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    rotation = _rotation(video)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise DecodeError(f"{path}: video stream has no frame size")
    if rotation % 180:
        width, height = height, width
    fps = _fraction(video.get("avg_frame_rate")) or _fraction(video.get("r_frame_rate")) or Fraction(25)
    duration = _float(video.get("duration")) or _float(data.get("format", {}).get("duration")) or math.nan
    n_frames = int(video["nb_frames"]) if str(video.get("nb_frames", "")).isdigit() else None
    if n_frames is None and math.isfinite(duration):
        n_frames = round(duration * fps)
    return VideoInfo(path, width, height, fps, duration, n_frames, rotation, audio.get("codec_name") if audio else None)


def _is_cover_art(stream: dict) -> bool:
    return bool(stream.get("disposition", {}).get("attached_pic"))


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    return int(stream.get("tags", {}).get("rotate", 0)) % 360


def _fraction(text: str | None) -> Fraction | None:
    try:
        value = Fraction(text) if text else None
    except (ValueError, ZeroDivisionError):
        return None
    return value if value and value > 0 else None


def _float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _probe_folder(path: Path) -> VideoInfo:
    images = image_files(path)
    if not images:
        raise InputError(f"{path}: folder holds no images")
    return VideoInfo(path, 0, 0, Fraction(0), math.nan, len(images), is_stills=True)


def image_files(folder: Path) -> list[Path]:
    """The images of a folder (sorted by name; other files are skipped with a note), or an image itself."""
    if folder.is_file():
        return [folder]
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if skipped:
        log.info("%s: skipping %d non-image file(s): %s", folder, len(skipped), ", ".join(skipped[:5]))
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


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


class VideoReader:
    """Iterate a video's frames from an ffmpeg subprocess. Use as a context manager (kills ffmpeg).

    With `sample_fps`, ffmpeg passes on only the frames FrameSampler(sample_fps) takes (the first of each
    1/sample_fps-second slot, and any frame without a timestamp); the others never cross the pipe, which
    halves ffmpeg's work at 2 fps. `frames_read` counts every decoded frame either way."""

    def __init__(self, info: VideoInfo, sample_fps: float | None = None, stall_timeout_s: float = 60.0):
        self.info, self.stall_timeout_s = info, stall_timeout_s
        self.decode_errors = 0  # decoder complaints (corrupt packets, concealed slices)
        self.frames_read = 0  # every decoded frame, passed on or not
        # (pts, index, time) of the latest decoded frames: a sampled frame's index is looked up here by its pts
        self._decoded: deque[tuple[str, int, float]] = deque(maxlen=256)
        self._timestamps: queue.Queue[tuple[int, float]] = queue.Queue()
        self._frames: queue.Queue[Frame | BaseException | None] = queue.Queue(
            max(2, QUEUE_BYTES // (info.width * info.height * 3))
        )
        self._sampled = bool(sample_fps)
        # Frames cross the pipe and are kept as I420 (half the bytes of RGB; pipe copies cost as much CPU as
        # decoding here). Odd frame sizes have no exact I420 layout: RGB then.
        self._i420 = info.width % 2 == 0 and info.height % 2 == 0
        # showinfo without checksums: they cost more than decoding the frame.
        filters = "showinfo=checksum=0"
        if sample_fps:  # showinfo_0 sees every decoded frame, showinfo_2 the ones passed on
            slot = f"floor(%s*{float(sample_fps)!r}+1e-6)"
            filters += (f",select='isnan(t)+isnan(prev_selected_t)+gte({slot % 't'}-{slot % 'prev_selected_t'}\\,1)'"
                        ",showinfo=checksum=0")
        args = (
            ffmpeg.input(str(info.path), threads=codec_threads(info.width, info.height))
            .output("pipe:", format="rawvideo", pix_fmt="yuv420p" if self._i420 else "rgb24", vf=filters,
                    map="0:v:0", fps_mode="passthrough")
            .global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "info")
            .compile(cmd=ffmpeg_path())
        )
        self._proc = start(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._stderr = StderrTail(self._proc.stderr, self._on_stderr_line)
        self._stopped = threading.Event()
        self._reader = threading.Thread(target=self._read_frames, daemon=True)
        self._reader.start()

    def _on_stderr_line(self, line: str) -> None:
        match = _SHOWINFO.search(line)
        if match:
            stage, index, pts = int(match[1]), int(match[2]), match[3]
            time_s = math.nan if pts == "NOPTS" else float(match[4])
            if stage == 0:
                self.frames_read += 1
                if self._sampled:
                    self._decoded.append((pts, index, time_s))
                else:
                    self._timestamps.put((index, time_s))
            else:  # a sampled frame: its source index is the one showinfo_0 gave the latest frame with its pts
                self._timestamps.put(next(((i, t) for p, i, t in reversed(self._decoded) if p == pts), (index, time_s)))
        elif _DECODE_ERROR.search(line):
            self.decode_errors += 1

    def _read_frames(self) -> None:
        width, height = self.info.width, self.info.height
        shape = (height * 3 // 2, width) if self._i420 else (height, width, 3)
        try:
            while not self._stopped.is_set():
                pixels = np.empty(shape, np.uint8)
                if not self._read_exactly(pixels):
                    break
                index, time_s = self._timestamps.get(timeout=self.stall_timeout_s)
                time_s = time_s if math.isfinite(time_s) else index / float(self.info.fps)
                if self._i420 and self._sampled:  # every frame is analysed: convert here, beside the detector
                    self._put(Frame(index, time_s, cv2.cvtColor(pixels, cv2.COLOR_YUV2RGB_I420)))
                else:  # frames for the annotated video stay I420 until something needs RGB
                    self._put(Frame(index, time_s, pixels, is_i420=self._i420))
            self._put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _read_exactly(self, buffer: np.ndarray) -> bool:
        """Fill `buffer` with the next frame's bytes; False at the end of the stream (a partial frame is dropped)."""
        view, filled = memoryview(buffer), 0
        while filled < buffer.nbytes:
            n = self._proc.stdout.readinto(view[filled:])
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


def read_image(path: Path) -> np.ndarray:
    """Any still PIL reads (RGB, grayscale, RGBA, CMYK, palette, 16-bit), EXIF-rotated, as RGB uint8."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                array = np.asarray(image, np.float64)
                scale = 257.0 if array.max() > 255 else 1.0
                return np.repeat(np.clip(array / scale, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image.convert("RGBA"))
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def image_frames(info: VideoInfo) -> Iterator[Frame]:
    """The stills of an image folder (or a single image) as frames; unreadable ones are skipped with a warning."""
    for index, path in enumerate(image_files(info.path)):
        try:
            yield Frame(index, math.nan, read_image(path), name=path.name)
        except InputError as exc:
            log.warning("%s", exc)
