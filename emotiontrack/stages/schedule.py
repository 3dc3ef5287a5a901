"""The detection schedule: when to look at the whole frame for faces, and when to follow known ones.

Glossary:
- *whole-frame look*: MTCNN's full cascade (P-, R- and O-Net) over the frame; finds every face, ~50 ms a
  720p frame on a CPU core.
- *follow*: MTCNN's last stage (O-Net) alone on the square around each face the tracker expects; confirms
  and refines those faces and their landmarks, ~2 ms a face. It cannot find new faces.
- *expected faces*: the boxes where the tracker predicts its live tracks at a frame's time.
- *second look*: after a whole-frame look, MTCNN again on an enlarged crop around each expected face it
  missed, with looser thresholds (`Detector.detect_around`).
- *due*: a whole-frame look is due every `every_s` seconds of video (counted from the first analysed
  frame, whatever frames were looked at in between, so that the results do not depend on how frames are
  grouped into chunks), and at stills. Besides, any frame where following missed an expected face (hidden,
  turned away, gone) gets a whole-frame look, so that a face that reappears elsewhere is found as soon as
  with a whole-frame look at every frame, while its track still accepts it.
- *shot cut*: the source cuts to another shot between two analysed frames (`Frame.shot` changes; ffmpeg's
  scdet finds cuts on every decoded frame, media/decode.py). Every track ends there, and the first frame of
  the new shot gets a whole-frame look: a face is never followed, nor linked, across a cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from emotiontrack.stages.detector import Detector
from emotiontrack.stages.track import FaceTracker, iou_matrix
from emotiontrack.types import Faces, Frame, StageTimes


class FaceFinder:
    """Finds and tracks the faces of analysed frames, in order (see the glossary above): a whole-frame
    look when one is due or nobody is followed, else following, and a second look after whole-frame looks."""

    def __init__(self, detector: Detector, tracker: FaceTracker, every_s: float):
        self.detector, self.tracker, self.every_s = detector, tracker, every_s
        self._last_full_s = -math.inf
        self._looked_shot = self._tracked_shot = 0  # the shot of the latest frame scheduled, and tracked

    def find(self, frames: Sequence[Frame], times: StageTimes) -> list[Faces]:
        """The tracked faces of each frame (frames in time order, across calls)."""
        due = [self._full_look_due(frame) for frame in frames]
        with times.measure("detect"):
            full = iter(self.detector.detect([f for f, d in zip(frames, due) if d]))  # batched: pays on a GPU
        tracked = []
        for frame, is_due in zip(frames, due):
            if frame.shot != self._tracked_shot:
                self.tracker.end_tracks()
                self._tracked_shot = frame.shot
            with times.measure("detect"):
                faces = self._look(frame, next(full) if is_due else None)
            with times.measure("track"):
                tracked.append(self.tracker.update(faces))
        return tracked

    def _look(self, frame: Frame, full_look: Faces | None) -> Faces:
        expected = self.tracker.expected(frame.time_s)
        if full_look is None and len(expected):
            followed = self.detector.follow(frame, expected)
            if len(followed) == len(expected):  # every expected face is where it should be
                return followed
        if full_look is None:  # nobody to follow, or somebody lost: look at the whole frame now (the schedule
            full_look = self.detector.detect([frame])[0]  # of due looks stays as it was: see the glossary)
        return look_again(frame, full_look, expected, self.detector)

    def _full_look_due(self, frame: Frame) -> bool:
        new_shot, self._looked_shot = frame.shot != self._looked_shot, frame.shot
        if new_shot or not math.isfinite(frame.time_s) or frame.time_s - self._last_full_s >= self.every_s - 1e-6:
            self._last_full_s = frame.time_s
            return True
        return False


def look_again(frame: Frame, faces: Faces, expected: np.ndarray, detector: Detector) -> Faces:
    """Add the faces found by a second, closer look where tracked faces are expected but were not detected."""
    if len(expected) and len(faces):
        expected = expected[iou_matrix(expected, faces.xyxy).max(axis=1) < 0.3]
    if not len(expected):
        return faces
    found = detector.detect_around(frame, expected)
    if len(found) and len(faces):
        found = found[iou_matrix(found.xyxy, faces.xyxy).max(axis=1) < 0.3]
    return Faces.merge([faces, found]) if len(found) else faces
