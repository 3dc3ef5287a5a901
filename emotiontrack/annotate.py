"""Annotated output: every source frame with each face's box, id and current emotion, encoded by ffmpeg.

`FaceAnnotator.annotate(rgb, boxes)` draws (sizes scale with the frame, so labels read at 360p and 4K).
`TrackHistory` keeps each face's analysed samples and answers "where is each face, and what does it
feel, at time t": boxes are interpolated between analysed frames (and across gaps up to `bridge_s`),
probabilities are the smoothed ones. `AnnotatedVideo` buffers frames until the analysis has run
`lookahead_s` past them, so the drawn values are final, then pipes them to ffmpeg (libx264, yuv420p),
which also copies the source's audio (or re-encodes it to AAC where mp4 cannot hold it).
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import queue
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import ffmpeg
import numpy as np
from numpy.typing import NDArray

from emotiontrack._ffmpeg import StderrTail, codec_threads, ffmpeg_path, start, stop_process
from emotiontrack.errors import OutputError
from emotiontrack.smooth import smooth_track
from emotiontrack.types import EMOTIONS, Faces, Frame, VideoInfo
from emotiontrack.write import atomic_path

log = logging.getLogger(__name__)

# One colour per emotion (RGB), shared by the video, the charts and the report.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (214, 39, 40),
    "disgust": (140, 160, 40),
    "fear": (148, 103, 189),
    "happy": (255, 187, 0),
    "neutral": (150, 150, 150),
    "sad": (31, 119, 180),
    "surprise": (23, 190, 207),
}
# Audio copied as it is; anything else (AC-3, PCM, Vorbis...) is re-encoded to AAC, which every browser
# and phone plays from an mp4 (mp4 could hold AC-3, but browsers would not play it).
COPIED_AUDIO = {"aac"}
TEXT_COLOUR = (0, 0, 0)
PENDING_BYTES = 512 * 2**20  # frames held for lookahead, at most (4K video draws a little earlier)
INBOX_BYTES = 128 * 2**20  # frames queued for the drawing thread, at most


@dataclass(frozen=True)
class FaceBox:
    """What to draw for one face: id, box (x1, y1, x2, y2) and probabilities in EMOTIONS order."""

    face_id: int
    xyxy: NDArray[np.float64]
    probs: NDArray[np.float32]


@dataclass(frozen=True)
class _Label:
    """Where one face's drawing goes, in frame pixels."""

    box: tuple[int, int, int, int]
    text: str
    colour: tuple[int, int, int]
    background: tuple[int, int, int, int]  # the label's filled rectangle
    origin: tuple[int, int]  # the text's baseline start
    thickness: int  # of the box's lines
    font_scale: float
    font_thickness: int


class FaceAnnotator:
    """Draws boxes and labels ("3 happy 82%") coloured by emotion; sizes follow the frame's height.

    `annotate` draws on RGB frames. `annotate_i420` draws the same on I420 planes, as the decoder gives them
    and the encoder takes them, with no colour conversion."""

    def annotate(self, rgb: NDArray[np.uint8], boxes: list[FaceBox], out: NDArray[np.uint8] | None = None) -> NDArray[np.uint8]:
        """A copy of `rgb` with the boxes drawn, written into `out` when given (reusing one buffer per video)."""
        if out is None:
            out = np.array(rgb)
        else:
            np.copyto(out, rgb)
        for face in boxes:
            self._draw(out, self._layout(face, out.shape[0]))
        return out

    def annotate_i420(self, i420: NDArray[np.uint8], width: int, height: int, boxes: list[FaceBox],
                      out: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """`annotate` for I420 planes (height * 3 / 2, width) of a frame with even sides, into `out`.

        Draws straight on the planes with each colour's Y, U and V: the luma is what `annotate` gives (both
        blend linearly), the chroma is drawn at its half resolution."""
        np.copyto(out, i420)
        luma, u, v = _planes(out, width, height)
        text_y, text_u, text_v = _yuv(TEXT_COLOUR)
        for face in boxes:
            label = self._layout(face, height)
            y, cb, cr = _yuv(label.colour)
            self._draw(luma, label, y, text_y)
            (x1, y1, x2, y2), (lx1, ly1, lx2, ly2) = label.box, label.background
            text = _text_coverage(label, width, height)
            for plane, value, text_value in ((u, cb, text_u), (v, cr, text_v)):
                cv2.rectangle(plane, (x1 // 2, y1 // 2), (x2 // 2, y2 // 2), value, max(1, round(label.thickness / 2)))
                cv2.rectangle(plane, (lx1 // 2, ly1 // 2), (lx2 // 2, ly2 // 2), value, -1)
                if text is not None:  # the label's chroma, turning to the text's where the letters cover it
                    (cx0, cy0), coverage = text
                    ch, cw = coverage.shape
                    plane[cy0 : cy0 + ch, cx0 : cx0 + cw] = (value + coverage * (text_value - value) + 0.5).astype(np.uint8)
        return out

    @staticmethod
    def _layout(face: FaceBox, height: int) -> _Label:
        thickness, font_scale, font_thickness = max(1, round(height / 240)), max(0.4, height / 900), max(1, round(height / 400))
        emotion = EMOTIONS[int(np.argmax(face.probs))]
        x1, y1, x2, y2 = (int(round(v)) for v in face.xyxy)
        text = f"{face.face_id} {emotion} {100 * float(np.max(face.probs)):.0f}%"
        (tw, th), baseline = _text_size(text, font_scale, font_thickness)
        top = y1 - th - baseline - 2 * thickness if y1 - th - baseline - 2 * thickness >= 0 else y2
        return _Label((x1, y1, x2, y2), text, EMOTION_COLORS[emotion],
                      (x1, top, x1 + tw + 2 * thickness, top + th + baseline + 2 * thickness), (x1 + thickness, top + th + thickness),
                      thickness, font_scale, font_thickness)

    @staticmethod
    def _draw(image: NDArray[np.uint8], label: _Label, colour: tuple[int, int, int] | int | None = None,
              text_colour: tuple[int, int, int] | int = TEXT_COLOUR) -> None:
        """Draw one face's box and label on `image` (RGB, or one plane given the colours' values there)."""
        colour = label.colour if colour is None else colour
        cv2.rectangle(image, label.box[:2], label.box[2:], colour, label.thickness)  # axis-aligned: nothing to smooth
        cv2.rectangle(image, label.background[:2], label.background[2:], colour, -1)
        cv2.putText(image, label.text, label.origin, cv2.FONT_HERSHEY_SIMPLEX, label.font_scale, text_colour,
                    label.font_thickness, cv2.LINE_AA)


def _planes(i420: NDArray[np.uint8], width: int, height: int) -> tuple[NDArray, NDArray, NDArray]:
    """Views of the Y (height, width), U and V (height / 2, width / 2) planes of I420 pixels."""
    flat = i420.reshape(-1)
    luma, chroma = width * height, width * height // 4
    return (flat[:luma].reshape(height, width), flat[luma : luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma :].reshape(height // 2, width // 2))


def _text_coverage(label: _Label, width: int, height: int) -> tuple[tuple[int, int], NDArray[np.float32]] | None:
    """How much of each chroma sample the label's letters cover (0-1), with the top-left chroma sample of
    that array; None when the label lies outside the frame."""
    x0, y0 = max(0, label.background[0]) // 2 * 2, max(0, label.background[1]) // 2 * 2
    x1, y1 = min(width, label.background[2] + 1) // 2 * 2, min(height, label.background[3] + 1) // 2 * 2
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0 // 2, y0 // 2), _glyph_coverage(label.text, label.font_scale, label.font_thickness,
                                               label.origin[0] - x0, label.origin[1] - y0, x1 - x0, y1 - y0)


# Labels repeat from frame to frame (same face, emotion and percentage): their sizes and letter coverage
# are worth keeping rather than rendering again for each of the ~25 frames a second.
@functools.lru_cache(maxsize=4096)
def _text_size(text: str, font_scale: float, font_thickness: int) -> tuple[tuple[int, int], int]:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness)


@functools.lru_cache(maxsize=1024)
def _glyph_coverage(text: str, font_scale: float, font_thickness: int, x: int, y: int, width: int, height: int) -> NDArray[np.float32]:
    """Coverage (height / 2, width / 2) of text drawn from baseline point (x, y) in a (height, width) box."""
    mask = np.zeros((height, width), np.uint8)
    cv2.putText(mask, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255, font_thickness, cv2.LINE_AA)
    coverage = cv2.resize(mask, (width // 2, height // 2), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    coverage.flags.writeable = False  # shared by every frame that shows this label
    return coverage


@functools.cache
def _yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour's Y, U and V, as OpenCV converts frames for the encoder (BT.601, limited range)."""
    y, u, v = cv2.cvtColor(np.full((2, 2, 3), rgb, np.uint8), cv2.COLOR_RGB2YUV_I420).reshape(-1)[[0, 4, 5]]
    return int(y), int(u), int(v)


@dataclass
class _Track:
    times: list[float] = field(default_factory=list)
    boxes: list[NDArray[np.float64]] = field(default_factory=list)
    probs: list[NDArray[np.float32]] = field(default_factory=list)
    smoothed: list[NDArray[np.float32] | None] = field(default_factory=list)  # filled once final


class TrackHistory:
    """Analysed samples per face; `at(t)` gives the boxes to draw at any time t."""

    def __init__(self, smooth_s: float, bridge_s: float, hold_s: float):
        self.smooth_s, self.bridge_s, self.hold_s = smooth_s, bridge_s, hold_s
        self._tracks: dict[int, _Track] = {}
        self.latest_s = -np.inf

    def add(self, faces: Faces) -> None:
        for face_id, box, probs in zip(faces.track_id, faces.xyxy, faces.probs):
            track = self._tracks.setdefault(int(face_id), _Track())
            track.times.append(faces.time_s)
            track.boxes.append(box.astype(np.float64))
            track.probs.append(probs)
            track.smoothed.append(None)
        self.latest_s = max(self.latest_s, faces.time_s)

    def _smoothed(self, track: _Track, i: int) -> NDArray[np.float32]:
        if track.smoothed[i] is not None:
            return track.smoothed[i]
        lo = bisect.bisect_left(track.times, track.times[i] - self.smooth_s)
        hi = bisect.bisect_right(track.times, track.times[i] + self.smooth_s)
        value = smooth_track(np.asarray(track.times[lo:hi]), np.asarray(track.probs[lo:hi]), self.smooth_s)[i - lo]
        # Samples arrive in time order, so once the analysis is a window past this one its value is final:
        # keep it rather than recompute it for each of the ~25 frames drawn around it.
        if track.times[i] + self.smooth_s <= self.latest_s:
            track.smoothed[i] = value
        return value

    def at(self, t: float) -> list[FaceBox]:
        out = []
        for face_id, track in self._tracks.items():
            after = bisect.bisect_left(track.times, t)  # first sample at or after t
            if after < len(track.times) and track.times[after] == t:
                out.append(FaceBox(face_id, track.boxes[after], self._smoothed(track, after)))
            elif 0 < after < len(track.times) and track.times[after] - track.times[after - 1] <= self.bridge_s:
                t0, t1 = track.times[after - 1], track.times[after]
                u = (t - t0) / (t1 - t0)
                box = (1 - u) * track.boxes[after - 1] + u * track.boxes[after]
                probs = (1 - u) * self._smoothed(track, after - 1) + u * self._smoothed(track, after)
                out.append(FaceBox(face_id, box, probs))
            elif after > 0 and t - track.times[after - 1] <= self.hold_s and (
                    after == len(track.times) or track.times[after] - track.times[after - 1] > self.bridge_s):
                out.append(FaceBox(face_id, track.boxes[after - 1], self._smoothed(track, after - 1)))
        return out

    def forget_before(self, t: float) -> None:
        """Drop samples no longer needed to draw frames at or after t (bounded memory)."""
        keep_from = t - max(self.smooth_s, self.bridge_s, self.hold_s) - 1.0
        for face_id in list(self._tracks):
            track = self._tracks[face_id]
            cut = bisect.bisect_left(track.times, keep_from)
            if cut:
                del track.times[:cut], track.boxes[:cut], track.probs[:cut], track.smoothed[:cut]
            if not track.times:
                del self._tracks[face_id]


class VideoEncoder:
    """ffmpeg encoding RGB frames piped to it into H.264 mp4, with the source's first audio stream."""

    def __init__(self, path: Path, info: VideoInfo, width: int, height: int, crf: int = 23, preset: str = "ultrafast"):
        self.path, self.tmp = path, atomic_path(path)
        # Even-sized frames cross the pipe as I420 (converted by OpenCV, the inverse of the decoder's
        # conversion); odd sizes go as RGB and are padded by a pixel, as yuv420p needs even sizes.
        self._i420 = width % 2 == 0 and height % 2 == 0
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="yuv420p" if self._i420 else "rgb24",
                             s=f"{width}x{height}", framerate=str(info.fps))
        if not self._i420:
            video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
        streams, audio_args = [video], {}
        if info.audio_codec:
            streams.append(ffmpeg.input(str(info.path))["a:0"])
            audio_args = {"acodec": "copy"} if info.audio_codec in COPIED_AUDIO else {"acodec": "aac", "audio_bitrate": "160k"}
        args = (
            ffmpeg.output(*streams, str(self.tmp), format="mp4", vcodec="libx264", preset=preset, crf=crf,
                          threads=codec_threads(width, height),
                          pix_fmt="yuv420p", movflags="+faststart", fps_mode="passthrough", **audio_args)
            .global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y")
            .compile(cmd=ffmpeg_path())
        )
        self._proc = start(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._stderr = StderrTail(self._proc.stderr)
        self._yuv = np.empty((height * 3 // 2, width), np.uint8) if self._i420 else None  # reused every frame
        self.frames_written = 0

    def write(self, rgb: NDArray[np.uint8]) -> None:
        """Encode an RGB frame (height, width, 3)."""
        self._send(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420, dst=self._yuv) if self._i420 else np.ascontiguousarray(rgb))

    def write_i420(self, planes: NDArray[np.uint8]) -> None:
        """Encode a frame given as I420 planes (height * 3 / 2, width); even sizes only."""
        if not self._i420:
            raise ValueError("I420 frames need even sides")
        self._send(planes)

    def _send(self, data: NDArray[np.uint8]) -> None:
        try:
            self._proc.stdin.write(data.data)
        except (BrokenPipeError, OSError):
            self.abort()
            raise OutputError(f"{self.path}: ffmpeg stopped encoding ({self._stderr.last_error()})") from None
        self.frames_written += 1

    def finish(self, timeout_s: float = 300.0) -> None:
        self._proc.stdin.close()
        try:
            code = self._proc.wait(timeout_s)  # a watchdog: ffmpeg only has to flush what it holds
        except subprocess.TimeoutExpired:
            self.abort()
            raise OutputError(f"{self.path}: ffmpeg did not finish encoding within {timeout_s:.0f} s") from None
        self._stderr.join(timeout=5)
        if code != 0:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(f"{self.path}: ffmpeg could not encode the video ({self._stderr.last_error()})")
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        stop_process(self._proc)
        self.tmp.unlink(missing_ok=True)


class AnnotatedVideo:
    """Receives every decoded frame (and the faces of analysed ones) and writes the annotated video.

    Drawing and piping to ffmpeg run in a worker thread (cv2 and pipe writes release the GIL), so they
    overlap detection and classification in the caller's thread.
    """

    wants_all_frames = True

    def __init__(self, path: Path, info: VideoInfo, smooth_s: float, max_gap_s: float, sample_interval_s: float,
                 annotator: FaceAnnotator | None = None):
        self._state = _AnnotationState(path, info, smooth_s, max_gap_s, sample_interval_s, annotator)
        # Room for the frames between two analysed chunks, so the caller rarely waits for the drawing.
        self._inbox: queue.Queue = queue.Queue(maxsize=max(4, INBOX_BYTES // max(1, info.width * info.height * 3)))
        self._error: BaseException | None = None
        self._input_ended = False
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()

    def _work(self) -> None:
        try:
            while True:
                item = self._inbox.get()
                if item is None or self._stop.is_set():
                    break
                self._state.push(*item)
            if not self._stop.is_set():
                self._state.finish()
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc
            self._state.abort()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def push(self, frame: Frame, faces: Faces | None = None) -> None:
        while True:
            self._check()
            try:
                self._inbox.put((frame, faces), timeout=0.5)
                return
            except queue.Full:
                continue

    def end_input(self) -> None:
        """No more frames: the worker draws what is left and closes the encoder, while the caller goes on."""
        self._check()
        if not self._input_ended:
            self._input_ended = True
            self._inbox.put(None)

    def finish(self) -> None:
        """Draw what is left, wait for the encoder and move the file into place."""
        self.end_input()
        self._worker.join()
        self._check()

    def abort(self) -> None:
        """Stop at once: kill the encoder and delete its partial file."""
        self._stop.set()
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                break
        self._inbox.put(None)
        self._worker.join(timeout=10)
        self._state.abort()


class _AnnotationState:
    """The annotation itself, run by AnnotatedVideo's worker thread."""

    def __init__(self, path: Path, info: VideoInfo, smooth_s: float, max_gap_s: float, sample_interval_s: float,
                 annotator: FaceAnnotator | None = None):
        self.info, self.path = info, path
        self.annotator = annotator or FaceAnnotator()
        bridge_s = min(max_gap_s, 1.0)
        hold_s = sample_interval_s * 1.01
        self.history = TrackHistory(smooth_s, bridge_s, hold_s)
        # A frame is drawn once the analysis has passed it by the bridge (to know the next sample) plus the
        # smoothing window (to know that sample's smoothed value): then the drawn values are final.
        self.lookahead_s = max(bridge_s, hold_s) + smooth_s
        self._pending: deque[Frame] = deque()
        self._pending_bytes = 0
        self._encoder: VideoEncoder | None = None
        self._canvas: NDArray[np.uint8] | None = None  # the frame being drawn, one buffer reused throughout

    def push(self, frame: Frame, faces: Faces | None = None) -> None:
        if faces is not None:
            self.history.add(faces)
        self._pending.append(frame)
        self._pending_bytes += frame.pixels.nbytes
        self._drain(self.history.latest_s - self.lookahead_s)

    def _drain(self, ready_until: float) -> None:
        while self._pending and (self._pending[0].time_s <= ready_until or self._pending_bytes > PENDING_BYTES):
            frame = self._pending.popleft()
            self._pending_bytes -= frame.pixels.nbytes
            width, height = frame.size
            if self._encoder is None:
                self._encoder = VideoEncoder(self.path, self.info, width, height)
                self._canvas = np.empty_like(frame.pixels)
            boxes = self.history.at(frame.time_s)
            if frame.is_i420:
                self._encoder.write_i420(self.annotator.annotate_i420(frame.pixels, width, height, boxes, self._canvas))
            else:
                self._encoder.write(self.annotator.annotate(frame.rgb, boxes, out=self._canvas))
            self.history.forget_before(frame.time_s)

    def finish(self) -> None:
        self._drain(np.inf)
        if self._encoder is not None:
            self._encoder.finish()

    def abort(self) -> None:
        self._pending.clear()
        if self._encoder is not None:
            self._encoder.abort()


def write_annotated_still(path: Path, frame: Frame, faces: Faces, annotator: FaceAnnotator | None = None) -> None:
    """An annotated JPEG of one still (image folders), written atomically."""
    boxes = [FaceBox(int(i), b.astype(np.float64), p) for i, b, p in zip(faces.track_id, faces.xyxy, faces.probs)]
    image = (annotator or FaceAnnotator()).annotate(frame.rgb, boxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    try:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise OutputError(f"{path}: could not encode JPEG")
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
