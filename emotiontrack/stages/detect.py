"""Face detection with facenet-pytorch's MTCNN, on a downscaled copy of each frame.

MTCNN's cost grows with the pixels of its first pyramid level, which is set by the smallest face it
must find. Shrinking each frame so that a `min_face`-pixel face becomes `DETECTOR_MIN_FACE` pixels
gives the same pyramid for less resampling. MTCNN's quirks (None for no faces, object arrays,
boxes outside the frame) are normalised here, so only `Faces` records leave this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np
import torch

from emotiontrack.config import AnalyzeConfig
from emotiontrack.geometry.crops import square_crop
from emotiontrack.stages.facenet import MTCNN, bbreg
from emotiontrack.types import Faces, Frame

DETECTOR_MIN_FACE = 20  # pixels, in the image MTCNN sees (its own default)
LANDMARK_MIN_FACE = DETECTOR_MIN_FACE  # for training faces, enlarged to 4x48 px: found as they are, no downscaling
# P-, R- and O-Net thresholds, a notch below MTCNN's (0.6, 0.7, 0.7): on upscaled FER2013 faces this finds
# ~3% more faces and, on scikit-image's face-free photographs, no more false ones. `min_score` filters last.
STAGE_THRESHOLDS = (0.5, 0.6, 0.7)
# Around a face the tracker expects but the full-frame pass missed, MTCNN runs again on an enlarged
# crop with looser stage thresholds: this recovers about half of the faces the full pass misses (most are
# lost at P-Net), while the final score still has to reach REGION_MIN_SCORE.
REGION_THRESHOLDS = (0.3, 0.4, 0.5)
REGION_MIN_SCORE = 0.6
REGION_SIZE = 96  # pixels: the crop (twice the expected face) is resized to this, so the face is ~48 px
ONET_SIZE = 48  # O-Net's input size


class MTCNNDetector:
    """The `Detector` (detector.py) on facenet-pytorch's MTCNN: boxes in source pixels, clipped, with scores
    and landmarks; also the `LandmarkDetector` that training uses (`central_landmarks`)."""

    def __init__(self, min_face: float = AnalyzeConfig.min_face, min_score: float = AnalyzeConfig.min_score,
                 device: str | torch.device = "cpu"):
        self.min_face, self.min_score = float(min_face), float(min_score)
        self.device = torch.device(device)
        self.mtcnn = MTCNN(keep_all=True, select_largest=False, min_face_size=DETECTOR_MIN_FACE,
                           thresholds=list(STAGE_THRESHOLDS), device=self.device)
        self.mtcnn.eval()
        if self.device.type == "cpu":  # NHWC lets CPU convolutions and pooling vectorise: ~30% faster here
            for net in (self.mtcnn.pnet, self.mtcnn.rnet, self.mtcnn.onet):
                net.to(memory_format=torch.channels_last)
        self.region_mtcnn = MTCNN(keep_all=True, select_largest=False, min_face_size=DETECTOR_MIN_FACE,
                                  thresholds=list(REGION_THRESHOLDS), device=self.device)
        self.region_mtcnn.pnet, self.region_mtcnn.rnet, self.region_mtcnn.onet = self.mtcnn.pnet, self.mtcnn.rnet, self.mtcnn.onet
        self.region_mtcnn.eval()

    def scale_for(self, width: int, height: int) -> float:
        """Factor applied to a frame before detection: a `min_face` face becomes DETECTOR_MIN_FACE pixels, but
        the frame never shrinks below DETECTOR_MIN_FACE on its short side (MTCNN's pyramid would be empty) and
        never grows."""
        short = min(width, height)
        if short <= 2 * DETECTOR_MIN_FACE:  # small already: look at it as it is
            return 1.0
        return min(1.0, max(DETECTOR_MIN_FACE / self.min_face, DETECTOR_MIN_FACE / short))

    def detect(self, frames: Sequence[Frame]) -> list[Faces]:
        """A whole-frame look at each frame: its faces, boxes in source pixels, with scores and landmarks."""
        if not frames:
            return []
        scaled = [self._downscale(frame.rgb) for frame in frames]
        if len({image.shape for image, _ in scaled}) == 1:  # one call: ~30% less per frame on a CPU, far less on a GPU
            results = self._mtcnn([image for image, _ in scaled])
        else:
            results = [self._mtcnn(image)[0] for image, _ in scaled]
        return [self._to_faces(frame, scale, *result) for frame, (_, scale), result in zip(frames, scaled, results)]

    def detect_around(self, frame: Frame, expected: np.ndarray) -> Faces:
        """Look again for faces where the tracker expects them, boxes (k, 4): at most one face per box."""
        if len(expected) == 0:
            return Faces.empty(frame.index, frame.time_s)
        crops, origins = zip(*(square_crop(frame.rgb, box, 2.0, REGION_SIZE) for box in expected))
        results = self._mtcnn(list(crops), self.region_mtcnn)
        found = []
        for box, (x0, y0, scale), (boxes, probs, points) in zip(expected, origins, results):
            if boxes is None or len(boxes) == 0:
                continue
            xyxy = np.asarray(boxes, np.float64).reshape(-1, 4) / scale + [x0, y0, x0, y0]
            score = np.asarray(probs, np.float64).reshape(-1)
            landmarks = np.asarray(points, np.float64).reshape(-1, 5, 2) / scale + [x0, y0]
            plausible = (score >= max(REGION_MIN_SCORE, self.min_score)) & _near(xyxy, box[None])
            if plausible.any():
                best = int(np.argmax(np.where(plausible, score, -1)))
                found.append(Faces.from_boxes(frame.index, frame.time_s, xyxy[best : best + 1], score[best : best + 1],
                                              landmarks[best : best + 1]))
        if not found:
            return Faces.empty(frame.index, frame.time_s)
        return self._clip(Faces.merge(found), frame)

    def follow(self, frame: Frame, expected: np.ndarray) -> Faces:
        """Confirm and refine faces where the tracker expects them, boxes (k, 4), with MTCNN's last stage
        (O-Net) alone: it scores the square around each box and regresses the face's box and landmarks,
        as it does for R-Net's candidates in a full look, at ~2 ms a face instead of ~60 ms a frame."""
        if len(expected) == 0:
            return Faces.empty(frame.index, frame.time_s)
        xyxy, score, landmarks = self._onet(frame.rgb, expected)
        keep = (score >= max(STAGE_THRESHOLDS[2], self.min_score)) & _near(xyxy, expected)
        faces = Faces.from_boxes(frame.index, frame.time_s, xyxy[keep], score[keep], landmarks[keep])
        return self._clip(faces, frame)

    def _onet(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net on the square around each box (k, 4), from the full-resolution image: its regressed boxes
        (k, 4), scores (k,) and landmarks (k, 5, 2), in image pixels."""
        crops, origins = zip(*(square_crop(rgb, box, 1.0, ONET_SIZE) for box in boxes))
        x = torch.as_tensor(np.stack(crops), device=self.device).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            regression, points, probs = self.mtcnn.onet((x - 127.5) * 0.0078125)
        left, top, scale = (torch.tensor(v, dtype=torch.float32) for v in zip(*origins))
        squares = torch.stack([left, top, left + ONET_SIZE / scale, top + ONET_SIZE / scale, probs[:, 1].cpu()], dim=1)
        side = (squares[:, 2] - squares[:, 0] + 1)[:, None]  # MTCNN's pixel-inclusive box size
        landmarks = torch.stack([side * points[:, :5].cpu() + squares[:, :1] - 1, side * points[:, 5:].cpu() + squares[:, 1:2] - 1], dim=2)
        regressed = bbreg(squares, regression.cpu()).numpy().astype(np.float64)
        return regressed[:, :4], regressed[:, 4], landmarks.numpy().astype(np.float64)

    def central_landmarks(self, images: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """For same-sized RGB images each holding one face near the middle (enlarged training faces): the
        landmarks (5, 2) of the surest face whose box centre lies in the middle half, or None."""
        results = self._mtcnn(list(images))
        out: list[np.ndarray | None] = []
        for image, (boxes, probs, points) in zip(images, results):
            height, width = image.shape[:2]
            if boxes is None or len(boxes) == 0:
                out.append(None)
                continue
            centre = (np.asarray(boxes)[:, :2] + np.asarray(boxes)[:, 2:]) / 2
            central = (np.abs(centre[:, 0] - width / 2) < width / 4) & (np.abs(centre[:, 1] - height / 2) < height / 4)
            score = np.where(central, np.asarray(probs, np.float64), -1)
            best = int(np.argmax(score))
            out.append(np.asarray(points[best], np.float64) if score[best] >= self.min_score else None)
        return out

    @staticmethod
    def _clip(faces: Faces, frame: Frame) -> Faces:
        height, width = frame.rgb.shape[:2]
        xyxy = faces.xyxy.copy()
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        clipped = replace(faces, xyxy=xyxy)
        return clipped[(clipped.width >= 1) & (clipped.height >= 1)]

    def _downscale(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = rgb.shape[:2]
        scale = self.scale_for(width, height)
        if scale >= 1.0:
            return rgb, 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale

    def _mtcnn(self, images, mtcnn: MTCNN | None = None) -> list[tuple]:
        """MTCNN on one image or a list; one (boxes, probs, points) per image, None where no face."""
        batch = images if isinstance(images, list) else [images]
        if min(batch[0].shape[:2]) < DETECTOR_MIN_FACE:  # MTCNN's pyramid has no level (torch.cat of nothing)
            return [(None, None, None)] * len(batch)
        boxes, probs, points = (mtcnn or self.mtcnn).detect(batch, landmarks=True)
        return list(zip(boxes, probs, points))

    def _to_faces(self, frame: Frame, scale: float, boxes, probs, points) -> Faces:
        if boxes is None or len(boxes) == 0:
            return Faces.empty(frame.index, frame.time_s)
        xyxy = np.asarray(boxes, np.float64).reshape(-1, 4) / scale
        score = np.asarray(probs, np.float64).reshape(-1)
        landmarks = np.asarray(points, np.float64).reshape(-1, 5, 2) / scale
        faces = Faces.from_boxes(frame.index, frame.time_s, xyxy, score, landmarks)
        return self._clip(faces[faces.score >= self.min_score], frame)


def _near(found: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Whether each found box (n, 4) can be the face expected at the matching box (n or 1, 4): centre within
    half a face, size within a factor of two."""
    size = np.maximum(expected[:, 2] - expected[:, 0], expected[:, 3] - expected[:, 1])
    centre_offset = np.linalg.norm((found[:, :2] + found[:, 2:]) / 2 - (expected[:, :2] + expected[:, 2:]) / 2, axis=1) / size
    side = np.maximum(found[:, 2] - found[:, 0], found[:, 3] - found[:, 1]) / size
    return (centre_offset < 0.5) & (side > 0.5) & (side < 2)
