"""One long video across many workers: time segments that overlap, and their tracks stitched into one timeline.

Segment k owns the frames shown in [own_start_s, end_s) and decodes from `start_s`, `overlap_s` earlier, so
that by its own start its tracker has seen every face in view (a whole-frame look happens at least every
detect_every_s, and a face keeps its id across max_gap_s). In the overlap both neighbours see the same
frames: each track of the later segment takes the id of the earlier segment's track it overlaps most (mean
IoU of their boxes on the frames both saw, Hungarian assignment); the others get new ids. Each segment's
own rows then make one timeline, which is smoothed, summarised and charted once, as a single pass would be.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from emotiontrack.config import AnalyzeConfig
from emotiontrack.stages.track import iou_matrix
from emotiontrack.types import Faces

MIN_MEAN_IOU = 0.3  # below this, two tracks in the overlap are different faces
_EPS = 1e-6  # frame times are compared with this slack (a frame shown at exactly a boundary is the later one's)


@dataclass(frozen=True)
class Segment:
    start_s: float  # decoding starts here
    own_start_s: float  # this segment's rows start here (before: the overlap with the previous segment)
    end_s: float  # and end before here

    @property
    def window(self) -> tuple[float, float]:
        return self.start_s, self.end_s


def overlap_s(config: AnalyzeConfig) -> float:
    """Enough for a whole-frame look and a face's longest gap before a segment's own start."""
    return config.max_gap_s + config.detect_every_s + 1.0


def plan_segments(duration_s: float, length_s: float, overlap: float) -> list[Segment]:
    """Segments of `length_s` seconds (the last to the end of the source); one if the duration is unknown."""
    if not math.isfinite(duration_s) or duration_s <= length_s:
        return [Segment(0.0, 0.0, math.inf)]
    count = math.ceil(duration_s / length_s - _EPS)
    ends = [(k + 1) * length_s for k in range(count - 1)] + [math.inf]
    return [Segment(max(0.0, k * length_s - overlap), float(k * length_s), float(end)) for k, end in enumerate(ends)]


def owned(faces: Sequence[Faces], start_s: float, end_s: float) -> list[Faces]:
    return [f for f in faces if start_s - _EPS <= f.time_s < end_s - _EPS]


def stitch(segments: Sequence[Segment], parts: Sequence[Sequence[Faces]]) -> list[Faces]:
    """One timeline from each segment's faces (ids local to their segment), with ids continued across segments."""
    timeline: list[Faces] = []
    next_id = 0
    for segment, faces in zip(segments, parts):
        seen_before = owned(timeline, segment.start_s, segment.own_start_s)
        mapping = match_tracks(seen_before, owned(faces, segment.start_s, segment.own_start_s))
        for frame in owned(faces, segment.own_start_s, segment.end_s):
            ids = np.empty(len(frame), np.int64)
            for i, local in enumerate(frame.track_id.tolist()):
                if local not in mapping:  # a face first seen here: ids in order of first appearance
                    mapping[local], next_id = next_id, next_id + 1
                ids[i] = mapping[local]
            timeline.append(replace(frame, track_id=ids))
    return timeline


def match_tracks(earlier: Sequence[Faces], later: Sequence[Faces]) -> dict[int, int]:
    """later track id -> earlier track id, for the pairs whose boxes overlap on the frames both segments saw."""
    by_frame = {f.frame_index: f for f in earlier}
    iou_sum: dict[tuple[int, int], float] = defaultdict(float)
    count: dict[tuple[int, int], int] = defaultdict(int)
    for frame in later:
        other = by_frame.get(frame.frame_index)
        if other is None or not len(frame) or not len(other):
            continue
        ious = iou_matrix(other.xyxy.astype(np.float64), frame.xyxy.astype(np.float64))
        for i, a in enumerate(other.track_id.tolist()):
            for j, b in enumerate(frame.track_id.tolist()):
                iou_sum[a, b] += ious[i, j]
                count[a, b] += 1
    if not count:
        return {}
    earlier_ids = sorted({a for a, _ in count})
    later_ids = sorted({b for _, b in count})
    cost = np.full((len(earlier_ids), len(later_ids)), 1e6)
    for (a, b), n in count.items():
        mean = iou_sum[a, b] / n
        if mean >= MIN_MEAN_IOU:
            cost[earlier_ids.index(a), later_ids.index(b)] = 1.0 - mean
    rows, cols = linear_sum_assignment(cost)
    return {later_ids[c]: earlier_ids[r] for r, c in zip(rows, cols) if cost[r, c] < 1e6}
