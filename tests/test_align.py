"""Landmark-aligned crops: canonical positions reached, rotation undone, implausible landmarks refused."""

import math

import cv2
import numpy as np
import pytest

from emotiontrack.geometry.align import FER2013_GEOMETRY, Geometry, aligned_crop, mirror, similarity, warp_face
from emotiontrack.types import Faces


def _transform(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), shift[0]],
                     [scale * math.sin(a), scale * math.cos(a), shift[1]]])


@pytest.mark.parametrize("angle,scale", [(0, 1.0), (17, 4.2), (-28, 9.0), (8, 0.8)])
def test_known_landmarks_land_on_the_canonical_points(angle, scale):
    """A face whose landmarks are the canonical ones moved by a known similarity: the crop shows a bright dot
    at each canonical point (within a pixel), whatever the size and tilt of the face in the frame."""
    geometry = FER2013_GEOMETRY
    to_image = _transform(angle, scale, (310.0, 170.0))
    points = geometry.landmarks @ to_image[:, :2].T + to_image[:, 2]
    image = np.zeros((720, 1280, 3), np.uint8)
    radius = max(1.0, scale * 0.8)
    for x, y in points:  # drawn at sub-pixel precision (coordinates in 1/16 pixel)
        cv2.circle(image, (round(x * 16), round(y * 16)), round(radius * 16), (255, 255, 255), -1, cv2.LINE_AA, 4)
    crop, _ = aligned_crop(image, points, geometry)
    assert crop is not None and crop.shape == (48, 48)
    for cx, cy in geometry.landmarks:
        x0, y0 = int(cx) - 3, int(cy) - 3
        window = crop[y0 : y0 + 8, x0 : x0 + 8].astype(np.float64)
        assert window.sum() > 0
        ys, xs = np.mgrid[y0 : y0 + 8, x0 : x0 + 8]
        centroid = np.array([(xs * window).sum(), (ys * window).sum()]) / window.sum()
        assert np.linalg.norm(centroid - [cx, cy]) < 1.0


def test_a_tilted_face_gives_the_upright_faces_crop(models):
    """scikit-image's astronaut, upright and turned by 15 degrees: the aligned crops agree, the box crops do not."""
    skimage_data = pytest.importorskip("skimage.data")
    from emotiontrack.stages.classify import crop_face
    from emotiontrack.types import Frame

    upright = np.ascontiguousarray(skimage_data.astronaut())
    centre = (215.0, 105.0)  # near the face
    turn = cv2.getRotationMatrix2D(centre, 15, 1.0)
    tilted = cv2.warpAffine(upright, turn, upright.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    crops, boxes = [], []
    for i, rgb in enumerate((upright, tilted)):
        faces = models.detector.detect([Frame(i, 0.0, rgb)])[0]
        face = faces[[int(np.argmax(faces.score))]]
        crop, _ = aligned_crop(rgb, face.landmarks[0], FER2013_GEOMETRY)
        assert crop is not None
        crops.append(crop.astype(np.float64))
        boxes.append(crop_face(rgb, face.xyxy[0]).astype(np.float64))
    face = np.s_[8:44, 6:42]  # eyes to chin, left to right cheek
    aligned_difference = np.abs(crops[0] - crops[1])[face].mean()
    box_difference = np.abs(boxes[0] - boxes[1])[face].mean()
    assert aligned_difference < box_difference / 1.8  # measured 14 against 29-31 grey levels
    assert np.corrcoef(crops[0][face].ravel(), crops[1][face].ravel())[0, 1] > 0.8  # measured 0.88-0.90
    assert np.corrcoef(boxes[0][face].ravel(), boxes[1][face].ravel())[0, 1] < 0.7  # measured 0.44-0.47


@pytest.mark.parametrize("landmarks", [
    np.full((5, 2), np.nan),  # MTCNN gave none (a face from a stage that does not regress them)
    np.array([[100, 100], [100, 100], [100, 100], [100, 100], [100, 100]], float),  # all in one point
    np.array([[100, 100], [140, 100], [180, 100], [220, 100], [260, 100]], float),  # on a line: no face
    np.array([[100, 160], [140, 160], [120, 130], [104, 100], [136, 100]], float),  # upside down (mouth above eyes)
])
def test_implausible_landmarks_are_refused(landmarks):
    assert similarity(landmarks, FER2013_GEOMETRY) is None
    assert aligned_crop(np.zeros((300, 300, 3), np.uint8), landmarks, FER2013_GEOMETRY)[0] is None


def test_classifier_falls_back_to_the_box_crop_and_says_so(models):
    from emotiontrack.stages.classify import crop_face

    rgb = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    box = np.array([[100, 40, 180, 130], [20, 20, 90, 100]], np.float32)
    good = FER2013_GEOMETRY.landmarks * 80 / 48 + [100, 45]
    faces = Faces.from_boxes(0, 0.0, box, np.ones(2), np.stack([good, np.full((5, 2), np.nan)]))
    crops, cropped = models.classifier.crop(rgb, faces)
    assert cropped.aligned.tolist() == [True, False]
    # the landmarks are the canonical ones, scaled and shifted: a perfect fit; NaN for the box crop
    assert cropped.align_error[0] == pytest.approx(0, abs=1e-3) and np.isnan(cropped.align_error[1])
    np.testing.assert_array_equal(crops[1], crop_face(rgb, box[1]))
    assert not np.array_equal(crops[0], crop_face(rgb, box[0]))
    out = models.classifier.classify([rgb], [faces])[0]
    assert out.aligned.tolist() == [True, False] and out.align_error[0] == cropped.align_error[0]


def test_the_alignment_residual_grows_with_the_landmarks_error():
    from emotiontrack.geometry.align import fit

    rng = np.random.default_rng(0)
    canonical = FER2013_GEOMETRY.landmarks.astype(np.float64) * 3 + [200, 120]  # a 144-px face
    errors = []
    for noise_px in (0.0, 1.5, 4.5):  # in source pixels: 0, 0.5 and 1.5 px in 48-px units
        residuals = [fit(canonical + rng.normal(0, noise_px, (5, 2)), FER2013_GEOMETRY)[1] for _ in range(50)]
        errors.append(float(np.median(residuals)))
    assert errors[0] == pytest.approx(0, abs=1e-4) and errors[0] < errors[1] < errors[2]
    assert 0.2 < errors[1] < 0.8 and 0.7 < errors[2] < 2.2  # about the noise (in 48-px units), less what the fit absorbs
    assert np.isnan(fit(np.full((5, 2), np.nan), FER2013_GEOMETRY)[1])


def test_geometry_is_symmetric_and_survives_json():
    geometry = FER2013_GEOMETRY
    np.testing.assert_allclose(mirror(geometry.landmarks, geometry.size), geometry.landmarks, atol=1e-3)
    assert np.array_equal(Geometry.from_json(geometry.to_json()).landmarks, np.asarray(geometry.to_json(), np.float32))
    with pytest.raises(ValueError):
        Geometry.from_json([[1, 2]] * 4)


def test_warp_of_a_smooth_image_matches_a_direct_warp():
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8), (0, 0), 4)
    matrix = _transform(10, 1.0, (-20, -30))
    direct = cv2.warpAffine(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), matrix, (48, 48), flags=cv2.INTER_LINEAR)
    assert np.abs(warp_face(image, matrix).astype(int) - direct.astype(int)).max() <= 2


def test_a_large_face_is_shrunk_without_aliasing():
    """A one-pixel checkerboard shrunk tenfold is an even grey (a plain bilinear warp picks pixels: noise)."""
    board = ((np.indices((1000, 1000)).sum(axis=0) % 2) * 255).astype(np.uint8)
    image = np.repeat(board[..., None], 3, axis=2)
    matrix = _transform(7, 0.1, (-2, -3))
    crop = warp_face(image, matrix)
    assert abs(crop.mean() - 127.5) < 3 and crop.std() < 3
    plain = cv2.warpAffine(board, matrix, (48, 48), flags=cv2.INTER_LINEAR)
    assert plain.std() > 20
