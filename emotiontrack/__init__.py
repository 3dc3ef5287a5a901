"""emotiontrack: per-face emotion timelines from video."""

__version__ = "0.1.0"
