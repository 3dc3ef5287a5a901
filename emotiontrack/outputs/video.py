"""The annotated video: every source frame with each face's box, id and current emotion.

`TrackHistory` keeps each face's analysed samples and answers "where is each face, and what does it
feel, at time t": boxes are interpolated between analysed frames (and across gaps up to `bridge_s`),
probabilities are the smoothed ones. `AnnotatedVideo` buffers frames until the analysis has run
`lookahead_s` past them, so the drawn values are final, then draws them (draw.py) and pipes them to the
encoder (media/encode.py) from a worker thread. Image folders get one annotated JPEG per still instead.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from emotiontrack.files import write_jpeg
from emotiontrack.media.encode import VideoEncoder
from emotiontrack.outputs.draw import FaceAnnotator, FaceBox
from emotiontrack.outputs.smooth import smooth_track
from emotiontrack.types import Faces, Frame, VideoInfo

PENDING_BYTES = 512 * 2**20  # frames held for lookahead, at most (4K video draws a little earlier)
INBOX_BYTES = 32 * 2**20  # frames queued for the drawing thread, at most
ABORT_WAIT_S = 10.0  # how long `abort` lets the drawing thread finish a frame before it kills the encoder


@dataclass
class _Samples:
    times: list[float] = field(default_factory=list)
    boxes: list[NDArray[np.float64]] = field(default_factory=list)
    probs: list[NDArray[np.float32]] = field(default_factory=list)
    smoothed: list[NDArray[np.float32] | None] = field(default_factory=list)  # filled once final


class TrackHistory:
    """Analysed samples per face; `at(t)` gives the boxes to draw at any time t."""

    def __init__(self, smooth_s: float, bridge_s: float, hold_s: float):
        self.smooth_s, self.bridge_s, self.hold_s = smooth_s, bridge_s, hold_s
        self._tracks: dict[int, _Samples] = {}
        self.latest_s = -np.inf

    def add(self, faces: Faces) -> None:
        for face_id, box, probs in zip(faces.track_id, faces.xyxy, faces.probs):
            track = self._tracks.setdefault(int(face_id), _Samples())
            track.times.append(faces.time_s)
            track.boxes.append(box.astype(np.float64))
            track.probs.append(probs)
            track.smoothed.append(None)
        self.latest_s = max(self.latest_s, faces.time_s)

    def _smoothed(self, track: _Samples, i: int) -> NDArray[np.float32]:
        known = track.smoothed[i]
        if known is not None:
            return known
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


class AnnotatedVideo:
    """Receives every decoded frame (and the faces of analysed ones) and writes the annotated video.

    Drawing and piping to ffmpeg run in a worker thread (cv2 and pipe writes release the GIL), so they
    overlap detection and classification in the caller's thread.
    """

    wants_all_frames = True
    optional = True  # its failure costs the video, not the analysis

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
        """Queue a frame for drawing. After a failure frames are dropped: `close` raises it, and the analysis
        goes on without the video (it is optional)."""
        while self._error is None:
            try:
                self._inbox.put((frame, faces), timeout=0.5)
                return
            except queue.Full:
                continue

    def _end_input(self) -> None:
        """No more frames: the worker draws what is left and closes the encoder, while the caller goes on."""
        self._check()
        if not self._input_ended:
            self._input_ended = True
            self._inbox.put(None)

    def close(self) -> None:
        """Draw what is left, wait for the encoder and move the file into place."""
        self._end_input()
        self._worker.join()
        self._check()

    def abort(self) -> None:
        """Stop at once: end the drawing thread, then kill the encoder and delete its partial file. The
        state is touched only once the thread has ended; a thread blocked writing to a stalled ffmpeg is
        freed by killing that process (its pipe write then fails)."""
        self._stop.set()
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                break
        self._inbox.put(None)
        self._worker.join(timeout=ABORT_WAIT_S)
        while self._worker.is_alive():
            self._state.kill_encoder()
            self._worker.join(timeout=ABORT_WAIT_S)
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
        self._first_s = 0.0  # time of the first frame: the output's zero

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
                self._first_s = frame.time_s
            # The video runs at the source's average rate: a frame goes to the output frame of its time, the last
            # picture is held across a gap in the timestamps (a paused recording), and a frame that comes sooner
            # than the next output frame (a burst in a variable rate) is left out, so duration and sync hold.
            slot = round((frame.time_s - self._first_s) * float(self.info.output_fps))
            if slot < self._encoder.frames_written:
                continue
            while self._encoder.frames_written < slot:
                self._encoder.repeat_last()
            boxes = self.history.at(frame.time_s)
            assert self._canvas is not None  # made with the encoder
            if frame.is_i420:
                self._encoder.write_i420(self.annotator.annotate_i420(frame.pixels, width, height, boxes, self._canvas))
            else:
                self._encoder.write(self.annotator.annotate(frame.rgb, boxes, out=self._canvas))
            self.history.forget_before(frame.time_s)

    def finish(self) -> None:
        self._drain(np.inf)
        if self._encoder is not None:
            self._encoder.finish()

    def kill_encoder(self) -> None:
        """End ffmpeg at once, from any thread (the drawing thread may be blocked on its pipe)."""
        if self._encoder is not None:
            self._encoder.kill()

    def abort(self) -> None:
        self._pending.clear()
        if self._encoder is not None:
            self._encoder.abort()


class AnnotatedStills:
    """Frame sink writing one annotated JPEG per still of an image folder, <folder>/<image stem>.jpg."""

    wants_all_frames = False
    optional = False

    def __init__(self, folder: Path, annotator: FaceAnnotator | None = None):
        self.folder, self.annotator = folder, annotator or FaceAnnotator()

    def push(self, frame: Frame, faces: Faces | None) -> None:
        if faces is None:
            return
        boxes = [FaceBox(int(i), b.astype(np.float64), p) for i, b, p in zip(faces.track_id, faces.xyxy, faces.probs)]
        write_jpeg(self.folder / f"{Path(frame.name or str(frame.index)).stem}.jpg", self.annotator.annotate(frame.rgb, boxes))

    def close(self) -> None:
        """Each still is written when pushed."""

    def abort(self) -> None:
        """Written stills lie in the staging folder, which goes with the input."""
