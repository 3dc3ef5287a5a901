"""emotiontrack: per-face emotion timelines from video.

    import emotiontrack
    df = emotiontrack.analyze("interview.mp4")       # one row per (analysed frame, face)

Importing the package is cheap: torch, Keras and ffmpeg load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from emotiontrack.runtime import quiet_openmp

quiet_openmp()  # before anything imports torch (see runtime.py)


def __getattr__(name: str):
    """The records, on first use: importing the package stays instant (the CLI's Ctrl-C handling needs that)."""
    if name in ("EMOTIONS", "Faces", "Frame", "VideoInfo"):
        from emotiontrack import types

        return getattr(types, name)
    raise AttributeError(f"module 'emotiontrack' has no attribute {name!r}")


def analyze(path, models=None, **settings):
    """Analyse one video or image folder; return its timeline as a pandas DataFrame.

    `settings` are the fields of `emotiontrack.config.AnalyzeConfig` (sample_fps, min_face, min_score,
    detect_every_s, max_gap_s, crop, margin, smooth_s, device, threads, model). Pass `models=emotiontrack.pipeline.load_models(config)` to
    reuse loaded models across calls. The run's metadata is in `df.attrs["emotiontrack"]`.
    """
    from emotiontrack.pipeline import analyze as _analyze

    return _analyze(path, models=models, **settings)


__all__ = ["EMOTIONS", "Faces", "Frame", "VideoInfo", "analyze", "__version__"]
