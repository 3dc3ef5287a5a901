"""Face detection with facenet-pytorch's MTCNN, on a downscaled copy of each frame.

MTCNN's cost grows with the pixels of its first pyramid level, which is set by the smallest face it
must find. Shrinking each frame so that a `min_face`-pixel face becomes `DETECTOR_MIN_FACE` pixels
gives the same pyramid for less resampling. MTCNN's quirks (None for no faces, object arrays,
boxes outside the frame) are normalised here, so only `Faces` records leave this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN

from emotiontrack.types import Faces, Frame

DETECTOR_MIN_FACE = 20  # pixels, in the image MTCNN sees (its own default)


class FaceDetector:
    """`detect(frames) -> list[Faces]`: boxes in source pixels, clipped, with scores and landmarks."""

    def __init__(self, min_face: float = 80.0, min_score: float = 0.9, device: str | torch.device = "cpu"):
        self.min_face, self.min_score = float(min_face), float(min_score)
        self.device = torch.device(device)
        self.mtcnn = MTCNN(keep_all=True, select_largest=False, min_face_size=DETECTOR_MIN_FACE, device=self.device)
        self.mtcnn.eval()

    def scale_for(self, width: int, height: int) -> float:
        """Factor applied to a frame before detection (never enlarges)."""
        return min(1.0, DETECTOR_MIN_FACE / self.min_face) if min(width, height) > 2 * DETECTOR_MIN_FACE else 1.0

    def detect(self, frames: Sequence[Frame]) -> list[Faces]:
        if not frames:
            return []
        scaled = [self._downscale(frame.rgb) for frame in frames]
        same_size = len({image.shape for image, _ in scaled}) == 1
        if self.device.type == "cuda" and same_size:  # one batched call pays on a GPU, not on a CPU
            results = self._mtcnn([image for image, _ in scaled])
        else:
            results = [self._mtcnn(image)[0] for image, _ in scaled]
        return [self._to_faces(frame, scale, *result) for frame, (_, scale), result in zip(frames, scaled, results)]

    def _downscale(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = rgb.shape[:2]
        scale = self.scale_for(width, height)
        if scale >= 1.0:
            return rgb, 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale

    def _mtcnn(self, images) -> list[tuple]:
        """MTCNN on one image or a list; one (boxes, probs, points) per image, None where no face."""
        batch = images if isinstance(images, list) else [images]
        if min(batch[0].shape[:2]) < 12:  # below MTCNN's smallest window: nothing to find
            return [(None, None, None)] * len(batch)
        boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
        return list(zip(boxes, probs, points))

    def _to_faces(self, frame: Frame, scale: float, boxes, probs, points) -> Faces:
        if boxes is None or len(boxes) == 0:
            return Faces.empty(frame.index, frame.time_s)
        height, width = frame.rgb.shape[:2]
        xyxy = np.asarray(boxes, np.float64).reshape(-1, 4) / scale
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        score = np.asarray(probs, np.float64).reshape(-1)
        landmarks = np.asarray(points, np.float64).reshape(-1, 5, 2) / scale
        faces = Faces.from_boxes(frame.index, frame.time_s, xyxy, score, landmarks)
        keep = (faces.score >= self.min_score) & (faces.width >= 1) & (faces.height >= 1)
        return faces[keep]
