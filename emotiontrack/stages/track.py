"""Give each face one id for as long as it is in view, and across short gaps.

A track remembers its last box, when it was seen and its velocity. Each update predicts every track's
box at the new time, scores track/detection pairs by overlap, centre distance and size change, and
assigns them with the Hungarian method (`scipy.optimize.linear_sum_assignment`). Unmatched detections
start new tracks; tracks unseen for longer than `max_gap_s` seconds end. All windows are in seconds,
so the tracker behaves the same at any sampling rate. Frames without a time (stills) are not linked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from emotiontrack.config import AnalyzeConfig
from emotiontrack.types import Faces

_INVALID = 1e6


@dataclass
class _Track:
    id: int
    xyxy: NDArray[np.float64]
    time_s: float
    velocity: NDArray[np.float64]  # centre motion, pixels per second

    def predict(self, time_s: float) -> NDArray[np.float64]:
        shift = self.velocity * min(time_s - self.time_s, 1.0)  # do not extrapolate motion for long
        return self.xyxy + np.concatenate([shift, shift])


def iou_matrix(a: NDArray, b: NDArray) -> NDArray[np.float64]:
    """Pairwise intersection over union of boxes a (n, 4) and b (m, 4), xyxy."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return intersection / np.maximum(area_a[:, None] + area_b[None, :] - intersection, 1e-9)


class FaceTracker:
    """`update(faces) -> faces` with `track_id` set. One instance per video; ids start at 0."""

    def __init__(self, max_gap_s: float = AnalyzeConfig.max_gap_s, max_jump: float = 1.0, jump_per_s: float = 1.5, max_size_change: float = 3.0):
        self.max_gap_s = max_gap_s
        # Detector boxes of one face can differ in size by 2x between looks (a new expression, a turn).
        self.max_size_change = max_size_change
        # A detection may continue a track if its centre lies within this many face sizes of the
        # predicted centre: max_jump + jump_per_s * seconds since the track was last seen.
        self.max_jump, self.jump_per_s = max_jump, jump_per_s
        self._tracks: list[_Track] = []
        self._next_id = 0

    def expected(self, time_s: float) -> NDArray[np.float64]:
        """Predicted boxes (k, 4) at `time_s` of the tracks that would still accept a detection then."""
        live = [t for t in self._tracks if 0 < time_s - t.time_s <= self.max_gap_s]
        return np.stack([t.predict(time_s) for t in live]) if live else np.empty((0, 4))

    def end_tracks(self) -> None:
        """A shot cut: no face after it continues a track from before it (the ids go on counting)."""
        self._tracks = []

    def update(self, faces: Faces) -> Faces:
        """The frame's faces with `track_id` set: linked to the live tracks, new ids for the others."""
        time_s = faces.time_s
        if not math.isfinite(time_s):  # a still: nothing to link with
            self._tracks = []
            return replace(faces, track_id=self._new_ids(len(faces)))
        self._tracks = [t for t in self._tracks if time_s - t.time_s <= self.max_gap_s]
        ids = np.full(len(faces), -1, np.int64)
        if self._tracks and len(faces):
            rows, cols = self._match(faces, time_s)
            for row, col in zip(rows, cols):
                self._continue(self._tracks[row], faces.xyxy[col], time_s)
                ids[col] = self._tracks[row].id
        for col in np.flatnonzero(ids < 0):
            ids[col] = self._new_ids(1)[0]
            self._tracks.append(_Track(int(ids[col]), faces.xyxy[col].astype(np.float64), time_s, np.zeros(2)))
        return replace(faces, track_id=ids)

    def _match(self, faces: Faces, time_s: float) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        predicted = np.stack([t.predict(time_s) for t in self._tracks])
        detected = faces.xyxy.astype(np.float64)
        size_t = np.sqrt(np.prod(predicted[:, 2:] - predicted[:, :2], axis=1)).clip(1)
        size_d = np.sqrt(np.prod(detected[:, 2:] - detected[:, :2], axis=1)).clip(1)
        centre_t = (predicted[:, :2] + predicted[:, 2:]) / 2
        centre_d = (detected[:, :2] + detected[:, 2:]) / 2
        distance = np.linalg.norm(centre_t[:, None] - centre_d[None], axis=2) / size_t[:, None]
        size_change = np.abs(np.log(size_d[None, :] / size_t[:, None]))
        cost = (1 - iou_matrix(predicted, detected)) + distance + size_change
        gap = np.array([time_s - t.time_s for t in self._tracks])
        allowed = (distance <= (self.max_jump + self.jump_per_s * gap)[:, None]) & (size_change < math.log(self.max_size_change))
        cost[~allowed] = _INVALID
        rows, cols = linear_sum_assignment(cost)
        keep = cost[rows, cols] < _INVALID
        return rows[keep], cols[keep]

    @staticmethod
    def _continue(track: _Track, xyxy: NDArray, time_s: float) -> None:
        dt = time_s - track.time_s
        if dt > 0:
            measured = ((xyxy[:2] + xyxy[2:]) - (track.xyxy[:2] + track.xyxy[2:])) / 2 / dt
            track.velocity = 0.5 * track.velocity + 0.5 * measured
        track.xyxy, track.time_s = np.asarray(xyxy, np.float64), time_s

    def _new_ids(self, n: int) -> NDArray[np.int64]:
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        return ids
