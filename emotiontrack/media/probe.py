"""What an input is: `probe(path) -> VideoInfo` for a video file (ffprobe), an image, or an image folder."""

from __future__ import annotations

import logging
import math
import stat
import subprocess
from fractions import Fraction
from pathlib import Path

from emotiontrack.errors import DecodeError, InputError
from emotiontrack.media.stills import IMAGE_SUFFIXES, image_files, is_animated, read_image
from emotiontrack.media.tools import probe_json
from emotiontrack.types import VideoInfo

log = logging.getLogger(__name__)


def probe(path: Path) -> VideoInfo:
    """Describe a video file or an image folder; raise InputError/DecodeError if it cannot be analysed."""
    path = Path(path)
    kind = _file_kind(path)
    if kind == "dir":
        return _probe_folder(path)
    if path.suffix.lower() in IMAGE_SUFFIXES and not is_animated(path):  # an animated GIF is a video
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


def _file_kind(path: Path) -> str:
    """"dir" or "file"; InputError for anything else (a FIFO or device would block the first read forever)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or directory") from None
    except OSError as exc:  # a symbolic-link loop, a name too long, no permission on a parent folder...
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        return "dir"
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file (a pipe, socket or device)")
    return "file"


def _video_info(path: Path, data: dict) -> VideoInfo:
    streams = data.get("streams", [])
    videos = [s for s in streams if s.get("codec_type") == "video" and not _is_cover_art(s)]
    # The stream a player shows: the default one (several video streams, e.g. a camera's two angles), else the first.
    video = next((s for s in videos if s.get("disposition", {}).get("default")), videos[0] if videos else None)
    if video is None:
        kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["nothing"]
        raise DecodeError(f"{path}: no video stream (contains {', '.join(kinds)})")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    rotation = _rotation(video)
    autorotate = rotation % 90 == 0
    if not autorotate:  # ffmpeg can only turn frames by quarter turns: analyse them as stored, and say so
        log.warning("%s: the display matrix turns the video by %d degrees; frames are analysed as stored", path, rotation)
        rotation = 0
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise DecodeError(f"{path}: video stream has no frame size")
    if rotation % 180:
        width, height = height, width
    fps = _fraction(video.get("avg_frame_rate")) or _fraction(video.get("r_frame_rate")) or Fraction(25)
    # A recording paused for a while has a low average rate; its frames still come at the base rate.
    base = _fraction(video.get("r_frame_rate"))
    base_fps = base if base is not None and fps <= base <= max(Fraction(60), fps) else fps
    duration = _float(video.get("duration")) or _float(data.get("format", {}).get("duration")) or math.nan
    n_frames = int(video["nb_frames"]) if str(video.get("nb_frames", "")).isdigit() else None
    if n_frames is None and math.isfinite(duration):
        n_frames = round(duration * fps)
    return VideoInfo(path, width, height, fps, duration, n_frames, rotation, audio.get("codec_name") if audio else None,
                     audio_channels=int(audio.get("channels") or 0) if audio else 0,
                     stream=int(video.get("index", 0)), autorotate=autorotate, base_fps=base_fps,
                     sample_aspect=_fraction(str(video.get("sample_aspect_ratio", "1")).replace(":", "/")) or Fraction(1))


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
