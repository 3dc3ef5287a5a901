"""One colour per emotion (RGB), shared by the annotated video, the charts and the report."""

EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (214, 39, 40),
    "disgust": (140, 160, 40),
    "fear": (148, 103, 189),
    "happy": (255, 187, 0),
    "neutral": (150, 150, 150),
    "sad": (31, 119, 180),
    "surprise": (23, 190, 207),
}
