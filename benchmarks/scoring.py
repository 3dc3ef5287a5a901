"""Scoring a timeline against the known truth of a synthetic FER2013 composite clip (emotiontrack/synthetic.py):
detection recall, false faces, identity switches, per-segment and per-face emotion accuracy. Used by
benchmarks/fer_clip.py and tests/test_fer_clip.py."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from emotiontrack.media.frames import FrameSampler
from emotiontrack.synthetic import Slot


def slot_label(slot: Slot, t: float, change_s: float = 3.0) -> int:
    return slot.faces[min(int(t // change_s), len(slot.faces) - 1)][1]


def slot_index(slot: Slot, t: float, change_s: float = 3.0) -> int:
    """Index in the split of the face the slot shows at time t."""
    return slot.faces[min(int(t // change_s), len(slot.faces) - 1)][2]


def score_timeline(df, truth: list[list], slots: Sequence[Slot], classes: Sequence[str], sample_fps: float,
                   fps: Fraction | int = 25, change_s: float = 3.0, switch_window_s: float = 1.5,
                   segment_s: float = 3.0, clean: NDArray | None = None) -> dict[str, float]:
    """Score a timeline against a composite clip's truth.

    recall: share of (analysed frame, visible slot) pairs with a detection centred in the slot's picture;
    false_per_frame: detections centred in no slot, per analysed frame; id_switches: times a slot's
    face id changes between sightings at most `switch_window_s` apart; emotion_agreement: share of
    (slot, segment_s segment) pairs whose majority predicted emotion is the true one; face_accuracy: share
    of matched detections whose (unsmoothed) emotion is the true one; with `clean` (the model's predicted
    class per split image), clean_accuracy: the same share for the clean 48x48 crops of those faces.
    """
    fps = Fraction(fps)
    by_name = {s.name: s for s in slots}
    sampler = FrameSampler(sample_fps)
    analysed_frames = [i for i in range(len(truth)) if sampler.take(float(i / fps))]
    analysed = len(analysed_frames)
    hits = visible = false = switches = 0
    right = clean_right = aligned = 0
    sightings: dict[str, list[tuple[float, int, str]]] = {s.name: [] for s in slots}
    rows = df.groupby("frame")
    for frame_index in analysed_frames:
        boxes = truth[frame_index]
        visible += len(boxes)
        dets = rows.get_group(frame_index) if frame_index in rows.groups else df.iloc[:0]
        cx, cy = ((dets.x1 + dets.x2) / 2).to_numpy(), ((dets.y1 + dets.y2) / 2).to_numpy()
        matched = np.zeros(len(dets), bool)
        for name, x1, y1, x2, y2 in boxes:
            inside = (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2) & ~matched
            if inside.any():
                k = int(np.flatnonzero(inside)[0])
                matched[k] = True
                hits += 1
                t = float(frame_index / fps)
                sightings[name].append((t, int(dets.face_id.iloc[k]), str(dets.emotion.iloc[k])))
                truth_label = slot_label(by_name[name], t, change_s)
                right += int(str(dets.emotion.iloc[k]) == classes[truth_label])
                aligned += int(bool(dets.aligned.iloc[k])) if "aligned" in dets else 0
                if clean is not None:
                    clean_right += int(clean[slot_index(by_name[name], t, change_s)] == truth_label)
        false += int((~matched).sum())
    agree = segments = 0
    for name, seen in sightings.items():
        for (t0, id0, _), (t1, id1, _) in zip(seen, seen[1:]):
            switches += int(id0 != id1 and t1 - t0 <= switch_window_s)
        by_segment: dict[int, list[str]] = {}
        for t, _, emotion in seen:
            by_segment.setdefault(int(t // segment_s), []).append(emotion)
        for segment, emotions in by_segment.items():
            segments += 1
            predicted = max(set(emotions), key=emotions.count)
            agree += int(predicted == classes[slot_label(by_name[name], segment * segment_s + 0.01, change_s)])
    return {
        "recall": hits / max(visible, 1),
        "false_per_frame": false / max(analysed, 1),
        "id_switches": switches,
        "emotion_agreement": agree / max(segments, 1),
        "segments": segments,
        "ids": int(df.face_id.nunique()) if len(df) else 0,
        "face_accuracy": right / max(hits, 1),
        "clean_accuracy": clean_right / max(hits, 1) if clean is not None else float("nan"),
        "aligned_share": aligned / max(hits, 1),
    }
