"""Encoding frames into an H.264 mp4 with ffmpeg, with the source's first audio stream.

Audio is copied when mp4 players take it as it is (AAC) and re-encoded to AAC otherwise (AC-3, PCM,
Vorbis...: mp4 could hold AC-3, but browsers would not play it). The file is written under a temporary
name and moved into place when ffmpeg has finished.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import cv2
import ffmpeg
import numpy as np
from numpy.typing import NDArray

from emotiontrack.errors import OutputError
from emotiontrack.files import temporary_path
from emotiontrack.media.tools import (
    INPUT,
    OUTPUT,
    StderrTail,
    codec_threads,
    compile_command,
    pipe,
    start,
    stop_process,
)
from emotiontrack.types import VideoInfo

log = logging.getLogger(__name__)

COPIED_AUDIO = {"aac"}
AAC_MAX_CHANNELS = 8  # 7.1; more (16-channel PCM from production cameras) is mixed down to stereo


class VideoEncoder:
    """ffmpeg encoding RGB frames piped to it into H.264 mp4, with the source's first audio stream."""

    def __init__(self, path: Path, info: VideoInfo, width: int, height: int, crf: int = 23, preset: str = "ultrafast"):
        self.path, self.tmp = path, temporary_path(path)
        self.label = f"{info.source}: annotated video"  # messages name the input, not the staging folder
        # Even-sized frames cross the pipe as I420 (converted by OpenCV, the inverse of the decoder's
        # conversion); odd sizes go as RGB and are padded by a pixel, as yuv420p needs even sizes.
        self._i420 = width % 2 == 0 and height % 2 == 0
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="yuv420p" if self._i420 else "rgb24",
                             s=f"{width}x{height}", framerate=str(info.output_fps))
        if not self._i420:
            video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
        if info.sample_aspect != 1:  # anamorphic source: players stretch the annotated video the same way
            video = video.filter("setsar", f"{info.sample_aspect.numerator}/{info.sample_aspect.denominator}")
        streams, audio_args = [video], dict[str, str | int]()
        if info.audio_codec:
            streams.append(ffmpeg.input(INPUT)["a:0"])
            audio_args = {"acodec": "copy"} if info.audio_codec in COPIED_AUDIO else {"acodec": "aac", "audio_bitrate": "160k"}
            if audio_args["acodec"] == "aac" and info.audio_channels > AAC_MAX_CHANNELS:  # production cameras' 16
                log.info("%s: the annotated video's audio is %d channels mixed down to stereo", info.path, info.audio_channels)
                audio_args["ac"] = 2
        stream = (
            ffmpeg.output(*streams, OUTPUT, format="mp4", vcodec="libx264", preset=preset, crf=crf,
                          threads=codec_threads(width, height),
                          pix_fmt="yuv420p", movflags="+faststart", fps_mode="passthrough", **audio_args)
            .global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y")
        )
        args = compile_command(stream, {INPUT: info.path, OUTPUT: self.tmp})
        self._proc = start(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._stdin, self._stderr = pipe(self._proc.stdin), StderrTail(pipe(self._proc.stderr))
        self._yuv = np.empty((height * 3 // 2, width), np.uint8) if self._i420 else None  # reused every frame
        self.frames_written = 0
        self._last: np.ndarray | None = None

    def write(self, rgb: NDArray[np.uint8]) -> None:
        """Encode an RGB frame (height, width, 3)."""
        self._send(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420, dst=self._yuv) if self._i420 else np.ascontiguousarray(rgb))

    def write_i420(self, planes: NDArray[np.uint8]) -> None:
        """Encode a frame given as I420 planes (height * 3 / 2, width); even sizes only."""
        if not self._i420:
            raise ValueError("I420 frames need even sides")
        self._send(planes)

    def repeat_last(self) -> None:
        """Encode the last frame again (its buffer still holds it: the next frame has not been drawn yet)."""
        if self._last is not None:
            self._send(self._last)

    def _send(self, data: np.ndarray) -> None:
        self._last = data
        try:
            self._stdin.write(data.data)
        except (BrokenPipeError, OSError):
            self.abort()
            raise OutputError(f"{self.label}: ffmpeg stopped encoding ({self._stderr.last_error()})") from None
        self.frames_written += 1

    def finish(self, timeout_s: float = 300.0) -> None:
        self._stdin.close()
        try:
            code = self._proc.wait(timeout_s)  # a watchdog: ffmpeg only has to flush what it holds
        except subprocess.TimeoutExpired:
            self.abort()
            raise OutputError(f"{self.label}: ffmpeg did not finish encoding within {timeout_s:.0f} s") from None
        self._stderr.join(timeout=5)
        if code != 0:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(f"{self.label}: ffmpeg could not encode it ({self._stderr.last_error()})")
        os.replace(self.tmp, self.path)

    def kill(self) -> None:
        """Kill ffmpeg without touching its pipes: safe while another thread is blocked writing to it."""
        self._proc.kill()

    def abort(self) -> None:
        stop_process(self._proc)
        self.tmp.unlink(missing_ok=True)
