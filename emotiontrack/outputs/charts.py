"""Charts as PNG files, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Colours are the video's (annotate.EMOTION_COLORS); every chart is titled with the video and face id,
and time runs in seconds (mm:ss for clips over two minutes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from emotiontrack.files import atomic_file
from emotiontrack.outputs.colors import EMOTION_COLORS
from emotiontrack.types import EMOTIONS

MAX_PANELS = 12  # faces drawn in a timeline chart: the longest-seen ones


def _colour(emotion: str) -> tuple[float, float, float]:
    red, green, blue = EMOTION_COLORS[emotion]
    return red / 255, green / 255, blue / 255


def _save(fig: Figure, path: Path) -> Path:
    with atomic_file(path) as tmp:
        FigureCanvasAgg(fig).print_png(str(tmp))
    return path


def _figure(width_in: float, rows: int, row_in: float, top_in: float, bottom_in: float, left_in: float,
            gap_in: float = 0.0) -> Figure:
    """A figure laid out by fixed margins in inches. Constrained layout measures every tick label: with it, the
    timeline chart of a five-face minute took 0.67-0.84 s to write, without it 0.40-0.55 s
    (`python benchmarks/micro.py charts`)."""
    height = top_in + bottom_in + rows * row_in + (rows - 1) * gap_in
    fig = Figure(figsize=(width_in, height))
    fig.subplots_adjust(left=left_in / width_in, right=1 - 0.25 / width_in, top=1 - top_in / height,
                        bottom=bottom_in / height, hspace=gap_in / row_in)
    return fig


def _time_axis(ax, duration_s: float) -> None:
    if duration_s > 120:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda s, _: f"{int(s // 60)}:{int(s % 60):02d}"))
        ax.set_xlabel("time (mm:ss)")
    else:
        ax.set_xlabel("time (s)")


def plot_timelines(timeline: pd.DataFrame, faces: pd.DataFrame, title: str, path: Path) -> Path | None:
    """One panel per face: smoothed probability of each emotion over time (stacked to 1)."""
    if timeline.empty or timeline.time_s.isna().all():
        return None
    shown = faces.sort_values("frames_analysed", ascending=False).face_id.head(MAX_PANELS).sort_values().tolist()
    duration = float(timeline.time_s.max())
    fig = _figure(10, len(shown), row_in=1.25, top_in=0.5, bottom_in=0.8, left_in=0.7, gap_in=0.35)
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for ax, face_id in zip(axes, shown):
        face = timeline[timeline.face_id == face_id].sort_values("time_s")
        values = [face[f"smooth_{e}"].to_numpy() for e in EMOTIONS]
        ax.stackplot(face.time_s.to_numpy(), values, colors=[_colour(e) for e in EMOTIONS], labels=EMOTIONS, linewidth=0)
        ax.set_ylim(0, 1)
        ax.set_xlim(0, max(duration, 1e-3))
        ax.set_ylabel("p")
        ax.set_title(f"{title} · face {face_id}", loc="left", fontsize=10)
    _time_axis(axes[-1], duration)
    hidden = len(faces) - len(shown)
    if hidden > 0:
        axes[-1].annotate(f"{hidden} shorter-lived faces not shown", (1, -0.45), xycoords="axes fraction", ha="right", fontsize=8)
    axes[0].set_title(f"{title} · face {shown[0]} · smoothed probabilities", loc="left", fontsize=10)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncols=len(EMOTIONS), fontsize=8, frameon=False)
    return _save(fig, path)


def plot_shares(faces: pd.DataFrame, title: str, path: Path) -> Path | None:
    """Share of time per dominant emotion, one horizontal bar per face."""
    if faces.empty:
        return None
    faces = faces.sort_values("face_id")
    fig = _figure(9, 1, row_in=0.2 + 0.35 * len(faces), top_in=0.35, bottom_in=0.85, left_in=0.8)
    ax = fig.add_subplot()
    left = np.zeros(len(faces))
    labels = [f"face {i}" for i in faces.face_id]
    for emotion in EMOTIONS:
        share = faces[f"share_{emotion}"].to_numpy()
        ax.barh(labels, share, left=left, color=_colour(emotion), label=emotion)
        left += share
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the face's analysed time")
    ax.set_title(f"Emotion share per face — {title}", fontsize=11)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncols=len(EMOTIONS), fontsize=8, frameon=False)
    return _save(fig, path)


def plot_overview(summary: pd.DataFrame, path: Path) -> Path | None:
    """For a run of several inputs: each video's emotion shares, weighted by each face's visible time."""
    if summary.empty:
        return None
    rows = []
    for video, faces in summary.groupby("video", sort=True):
        weights = faces.frames_analysed.to_numpy(dtype=float)
        rows.append((video, [float(np.average(faces[f"share_{e}"], weights=weights)) for e in EMOTIONS]))
    fig = Figure(figsize=(10, 1.5 + 0.4 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    names = [Path(str(v)).name for v, _ in rows]
    left = np.zeros(len(rows))
    for k, emotion in enumerate(EMOTIONS):
        share = np.array([r[1][k] for r in rows])
        ax.barh(names, share, left=left, color=_colour(emotion), label=emotion)
        left += share
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of analysed face-time")
    ax.set_title("Emotion share per video (all faces)", fontsize=11)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(EMOTIONS), fontsize=8, frameon=False)
    return _save(fig, path)
