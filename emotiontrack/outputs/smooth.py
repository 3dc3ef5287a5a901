"""Temporal smoothing of each face's probabilities, in seconds, aware of uneven sampling.

A Gaussian kernel over time (sigma = window / 2, cut at ±window) weights each sample of the same face by
its real time distance, so a track sampled unevenly (dropped frames, variable frame rate, detection gaps)
is smoothed correctly and never across different faces. The smoothed value at a sample depends only on
samples within ±window, so a stream that waits `window` seconds can compute it exactly (see annotate).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def smooth_track(times: NDArray[np.float64], probs: NDArray[np.float32], window_s: float) -> NDArray[np.float32]:
    """Smoothed (n, k) probabilities of one face, samples at `times` (n,) seconds, sorted or not."""
    probs = np.asarray(probs, np.float32)
    times = np.asarray(times, np.float64)
    if window_s <= 0 or len(times) < 2 or not np.isfinite(times).all():
        return probs.copy()
    order = np.argsort(times, kind="stable")
    t, p = times[order], probs[order].astype(np.float64)
    lo = np.searchsorted(t, t - window_s, side="left")
    hi = np.searchsorted(t, t + window_s, side="right")
    sigma = window_s / 2
    smoothed = np.empty_like(p)
    for i in range(len(t)):  # only neighbours within the window: linear in the track's length
        weights = np.exp(-0.5 * ((t[lo[i] : hi[i]] - t[i]) / sigma) ** 2)
        smoothed[i] = weights @ p[lo[i] : hi[i]] / weights.sum()
    out = np.empty_like(smoothed)
    out[order] = smoothed / smoothed.sum(axis=1, keepdims=True)
    return out.astype(np.float32)


def smooth_timeline(face_ids: NDArray[np.int64], times: NDArray[np.float64], probs: NDArray[np.float32],
                    window_s: float) -> NDArray[np.float32]:
    """Smooth every face of a timeline separately; rows keep their order."""
    out = np.asarray(probs, np.float32).copy()
    for face in np.unique(face_ids):
        rows = np.flatnonzero(face_ids == face)
        out[rows] = smooth_track(times[rows], probs[rows], window_s)
    return out
