"""Drawing each face's box and label ("3 happy 82%", coloured by emotion) on a frame.

`FaceAnnotator.annotate(rgb, boxes)` draws on RGB frames; `annotate_i420` draws the same straight on the
I420 planes the decoder gives and the encoder takes, with no colour conversion. Sizes follow the frame's
height, so labels read at 360p and 4K. Label sizes and letter shapes repeat from frame to frame and are
cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from emotiontrack.outputs.colors import EMOTION_COLORS
from emotiontrack.types import EMOTIONS

TEXT_COLOUR = (0, 0, 0)


@dataclass(frozen=True)
class FaceBox:
    """What to draw for one face: id, box (x1, y1, x2, y2) and probabilities in EMOTIONS order."""

    face_id: int
    xyxy: NDArray[np.float64]
    probs: NDArray[np.float32]


@dataclass(frozen=True)
class _Label:
    """Where one face's drawing goes, in frame pixels."""

    box: tuple[int, int, int, int]
    text: str
    colour: tuple[int, int, int]
    background: tuple[int, int, int, int]  # the label's filled rectangle
    origin: tuple[int, int]  # the text's baseline start
    thickness: int  # of the box's lines
    font_scale: float
    font_thickness: int


class FaceAnnotator:
    """Draws boxes and labels ("3 happy 82%") coloured by emotion; sizes follow the frame's height.

    `annotate` draws on RGB frames. `annotate_i420` draws the same on I420 planes, as the decoder gives them
    and the encoder takes them, with no colour conversion."""

    def annotate(self, rgb: NDArray[np.uint8], boxes: list[FaceBox], out: NDArray[np.uint8] | None = None) -> NDArray[np.uint8]:
        """A copy of `rgb` with the boxes drawn, written into `out` when given (reusing one buffer per video)."""
        if out is None:
            out = np.array(rgb)
        else:
            np.copyto(out, rgb)
        for face in boxes:
            self._draw(out, self._layout(face, out.shape[0]))
        return out

    def annotate_i420(self, i420: NDArray[np.uint8], width: int, height: int, boxes: list[FaceBox],
                      out: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """`annotate` for I420 planes (height * 3 / 2, width) of a frame with even sides, into `out`.

        Draws straight on the planes with each colour's Y, U and V: the luma is what `annotate` gives (both
        blend linearly), the chroma is drawn at its half resolution."""
        np.copyto(out, i420)
        luma, u, v = _planes(out, width, height)
        text_y, text_u, text_v = _yuv(TEXT_COLOUR)
        for face in boxes:
            label = self._layout(face, height)
            y, cb, cr = _yuv(label.colour)
            self._draw(luma, label, y, text_y)
            (x1, y1, x2, y2), (lx1, ly1, lx2, ly2) = label.box, label.background
            text = _text_coverage(label, width, height)
            for plane, value, text_value in ((u, cb, text_u), (v, cr, text_v)):
                cv2.rectangle(plane, (x1 // 2, y1 // 2), (x2 // 2, y2 // 2), value, max(1, round(label.thickness / 2)))
                cv2.rectangle(plane, (lx1 // 2, ly1 // 2), (lx2 // 2, ly2 // 2), value, -1)
                if text is not None:  # the label's chroma, turning to the text's where the letters cover it
                    (cx0, cy0), coverage = text
                    ch, cw = coverage.shape
                    plane[cy0 : cy0 + ch, cx0 : cx0 + cw] = (value + coverage * (text_value - value) + 0.5).astype(np.uint8)
        return out

    @staticmethod
    def _layout(face: FaceBox, height: int) -> _Label:
        thickness, font_scale, font_thickness = max(1, round(height / 240)), max(0.4, height / 900), max(1, round(height / 400))
        emotion = EMOTIONS[int(np.argmax(face.probs))]
        x1, y1, x2, y2 = (int(round(v)) for v in face.xyxy)
        text = f"{face.face_id} {emotion} {100 * float(np.max(face.probs)):.0f}%"
        (tw, th), baseline = _text_size(text, font_scale, font_thickness)
        top = y1 - th - baseline - 2 * thickness if y1 - th - baseline - 2 * thickness >= 0 else y2
        return _Label((x1, y1, x2, y2), text, EMOTION_COLORS[emotion],
                      (x1, top, x1 + tw + 2 * thickness, top + th + baseline + 2 * thickness), (x1 + thickness, top + th + thickness),
                      thickness, font_scale, font_thickness)

    @staticmethod
    def _draw(image: NDArray[np.uint8], label: _Label, colour: tuple[int, int, int] | int | None = None,
              text_colour: tuple[int, int, int] | int = TEXT_COLOUR) -> None:
        """Draw one face's box and label on `image` (RGB, or one plane given the colours' values there)."""
        colour = label.colour if colour is None else colour
        cv2.rectangle(image, label.box[:2], label.box[2:], colour, label.thickness)  # axis-aligned: nothing to smooth
        cv2.rectangle(image, label.background[:2], label.background[2:], colour, -1)
        cv2.putText(image, label.text, label.origin, cv2.FONT_HERSHEY_SIMPLEX, label.font_scale, text_colour,
                    label.font_thickness, cv2.LINE_AA)


def _planes(i420: NDArray[np.uint8], width: int, height: int) -> tuple[NDArray, NDArray, NDArray]:
    """Views of the Y (height, width), U and V (height / 2, width / 2) planes of I420 pixels."""
    flat = i420.reshape(-1)
    luma, chroma = width * height, width * height // 4
    return (flat[:luma].reshape(height, width), flat[luma : luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma :].reshape(height // 2, width // 2))


def _text_coverage(label: _Label, width: int, height: int) -> tuple[tuple[int, int], NDArray[np.float32]] | None:
    """How much of each chroma sample the label's letters cover (0-1), with the top-left chroma sample of
    that array; None when the label lies outside the frame."""
    x0, y0 = max(0, label.background[0]) // 2 * 2, max(0, label.background[1]) // 2 * 2
    x1, y1 = min(width, label.background[2] + 1) // 2 * 2, min(height, label.background[3] + 1) // 2 * 2
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0 // 2, y0 // 2), _glyph_coverage(label.text, label.font_scale, label.font_thickness,
                                               label.origin[0] - x0, label.origin[1] - y0, x1 - x0, y1 - y0)


# Labels repeat from frame to frame (same face, emotion and percentage): their sizes and letter coverage
# are worth keeping rather than rendering again for each of the ~25 frames a second.
@functools.lru_cache(maxsize=4096)
def _text_size(text: str, font_scale: float, font_thickness: int) -> tuple[tuple[int, int], int]:
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness)
    return (width, height), baseline


@functools.lru_cache(maxsize=1024)
def _glyph_coverage(text: str, font_scale: float, font_thickness: int, x: int, y: int, width: int, height: int) -> NDArray[np.float32]:
    """Coverage (height / 2, width / 2) of text drawn from baseline point (x, y) in a (height, width) box."""
    mask = np.zeros((height, width), np.uint8)
    cv2.putText(mask, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255, font_thickness, cv2.LINE_AA)
    coverage = (cv2.resize(mask, (width // 2, height // 2), interpolation=cv2.INTER_AREA) / np.float32(255)).astype(np.float32)
    coverage.flags.writeable = False  # shared by every frame that shows this label
    return coverage


@functools.cache
def _yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour's Y, U and V, as OpenCV converts frames for the encoder (BT.601, limited range)."""
    y, u, v = cv2.cvtColor(np.full((2, 2, 3), rgb, np.uint8), cv2.COLOR_RGB2YUV_I420).reshape(-1)[[0, 4, 5]]
    return int(y), int(u), int(v)
