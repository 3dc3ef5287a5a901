"""Square crops around face boxes, shared by detection (second looks) and classification."""

from __future__ import annotations

import cv2
import numpy as np


def square_crop(image: np.ndarray, xyxy, enlarge: float, size: int) -> tuple[np.ndarray, tuple[int, int, float]]:
    """The square around a box's centre whose side is `enlarge` times the box's longer side, resized to
    (size, size). Parts outside the image repeat its edge pixels. Also returns (left, top, scale) so that
    crop pixel p maps back to image pixel p / scale + (left, top)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    side = max(round(max(x2 - x1, y2 - y1, 1.0) * enlarge), 1)
    left, top = round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2)
    right, bottom = left + side, top + side
    region = image[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
    if region.size == 0:
        region = np.zeros((1, 1) + image.shape[2:], image.dtype)
    pads = (max(0, -top), max(0, bottom - height), max(0, -left), max(0, right - width))
    if any(pads):
        region = cv2.copyMakeBorder(region, *pads, cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interpolation), (left, top, size / side)
