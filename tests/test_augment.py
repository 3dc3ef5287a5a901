"""Training views: the landmarks of training faces (found once, cached) and faces shown as analyze crops them."""

import math

import cv2
import numpy as np
import pytest

from emotiontrack.geometry.align import FER2013_GEOMETRY, Geometry, geometry_of, mirror
from emotiontrack.model.augment import AlignedViews, aligned_views, batches
from emotiontrack.model.dataset import Split
from emotiontrack.synthetic import astronaut_face
from emotiontrack.types import EMOTIONS


def _framed(face: np.ndarray, angle: float, scale: float) -> np.ndarray:
    """The astronaut's face as a 48x48 grayscale training image, turned and zoomed about its centre."""
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    centre = ((gray.shape[1] - 1) / 2, (gray.shape[0] - 1) / 2)
    turned = cv2.warpAffine(gray, cv2.getRotationMatrix2D(centre, angle, scale), gray.shape[::-1],
                            borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(turned, (48, 48), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def astronaut_split() -> Split:
    face = astronaut_face(240)
    framings = [(0, 1.0), (12, 1.0), (-12, 1.0), (0, 1.25), (0, 0.8), (8, 0.9)]
    images = np.stack([_framed(face, angle, scale) for angle, scale in framings])
    return Split(images, np.zeros(len(images), np.int64), tuple(sorted(EMOTIONS)), "astronaut")


def test_landmarks_are_found_once_and_then_read_from_the_cache(astronaut_split, tmp_path, landmark_detector):
    from emotiontrack.model import landmarks as module

    found = module.split_landmarks(astronaut_split, tmp_path, landmark_detector)
    assert found.shape == (6, 5, 2) and np.isfinite(found).all()
    # Left eye left of the right eye, both above the nose, the nose above the mouth corners.
    assert (found[:, 0, 0] < found[:, 1, 0]).all() and (found[:, :2, 1].max(1) < found[:, 2, 1]).all()
    assert (found[:, 2, 1] < found[:, 3:, 1].min(1)).all()
    # The copies turned by +-12 degrees have their eyes turned about as much (MTCNN's landmarks: a few degrees).
    eyes = found[:, 1] - found[:, 0]
    roll = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    assert abs(roll[1] - roll[0] + 12) < 5 and abs(roll[2] - roll[0] - 12) < 5
    assert len(list(tmp_path.glob("landmarks-6-*.npy"))) == 1

    class NotToBeAsked:
        def central_landmarks(self, images):
            raise AssertionError("the cached landmarks should have been used")

    np.testing.assert_array_equal(module.split_landmarks(astronaut_split, tmp_path, NotToBeAsked()), found)


def test_aligned_views_undo_the_framing_of_each_training_face(astronaut_split, tmp_path, landmark_detector):
    from emotiontrack.model.landmarks import split_landmarks
    from emotiontrack.model.train import alignments

    found = split_landmarks(astronaut_split, tmp_path, landmark_detector)
    geometry, stats = geometry_of(found)
    assert stats["found"] == 6 and np.allclose(geometry.landmarks, mirror(geometry.landmarks, 48), atol=1e-4)
    matrices = alignments(found, geometry)
    views = aligned_views(astronaut_split.images, matrices).astype(np.float64)
    # Differently turned and zoomed copies of one face: as the dataset frames them they differ a lot, as
    # aligned views they nearly coincide.
    def spread(images):
        return np.mean([np.abs(image - images[0])[8:40, 8:40].mean() for image in images[1:]])

    assert spread(views) < 0.5 * spread(astronaut_split.images.astype(np.float64))
    for matrix, points in zip(matrices, found):
        mapped = points @ matrix[:, :2].T + matrix[:, 2]
        assert np.sqrt(np.mean(np.sum((mapped - geometry.landmarks) ** 2, axis=1))) < 2.0


def _split(n: int = 40) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n), tuple(sorted(EMOTIONS)), "noise")


def _turn(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 10.0], [math.sin(a), math.cos(a), -5.0]], np.float32)


def test_the_share_of_aligned_views_is_honoured_and_faces_without_landmarks_stay_plain():
    split = _split()
    matrices = np.stack([_turn(30)] * len(split))
    matrices[::2] = np.nan  # half the faces have no landmarks
    plain = np.concatenate([x for x, _ in batches(split, 16, seed=3, epoch=1)])
    none = np.concatenate([x for x, _ in batches(split, 16, seed=3, epoch=1, views=AlignedViews(matrices, 0.0))])
    every = np.concatenate([x for x, _ in batches(split, 16, seed=3, epoch=1, views=AlignedViews(matrices, 1.0))])
    indices = np.concatenate([p for _, p in batches(split, 16, seed=3, epoch=1, views=AlignedViews(matrices, 1.0))])
    np.testing.assert_array_equal(none, plain)
    order = np.random.default_rng([3, 1]).permutation(len(split))  # the epoch's shuffle
    np.testing.assert_array_equal(indices, order)
    changed = np.abs(every - plain).mean(axis=(1, 2)) > 1
    np.testing.assert_array_equal(changed, order % 2 == 1)  # exactly the faces with a matrix
    half = np.concatenate([x for x, _ in batches(split, 16, seed=3, epoch=1, views=AlignedViews(matrices, 0.5))])
    share = (np.abs(half - plain).mean(axis=(1, 2)) > 1).sum() / (order % 2 == 1).sum()
    assert 0.2 < share < 0.8


def test_an_aligned_view_without_jitter_is_the_warp_of_the_face():
    split = _split(4)
    matrix = np.stack([_turn(0)] * 4)
    views = aligned_views(split.images, matrix)
    # A pure shift by (10, -5): pixel (x, y) of the view is pixel (x - 10, y + 5) of the face.
    np.testing.assert_array_equal(views[:, 0:43, 10:48], split.images[:, 5:48, 0:38])


def test_geometry_from_no_landmarks_is_fer2013s():
    geometry, stats = geometry_of(np.full((3, 5, 2), np.nan))
    assert isinstance(geometry, Geometry) and stats["found"] == 0
    np.testing.assert_array_equal(geometry.landmarks, FER2013_GEOMETRY.landmarks)


def test_a_scene_view_keeps_the_face_inside_its_ellipse_and_a_photograph_outside():
    from emotiontrack.model import scenes

    face = np.full((48, 48), 200, np.uint8)
    photos = (np.zeros((300, 300), np.uint8),)  # a black "photograph": what is not face is 0
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = scenes.in_scene(face, photos, rng).astype(np.float64)
        pad = scenes.scene_offset(48)
        assert scene.shape == (96, 96)
        assert scene[pad + 18 : pad + 30, pad + 18 : pad + 30].mean() > 120  # the face's middle shows (a Gaussian edge
        # lets some of the photograph through even there)
        assert scene[:8].mean() < 40 and scene[-8:].mean() < 40  # far above and below: the photograph
        assert scene[:, :8].mean() < 40 and scene[:, -8:].mean() < 40
        corner = scene[pad : pad + 4, pad : pad + 4].mean()  # the face image's corner: outside the ellipse
        assert corner < 100


def test_scene_views_in_training_are_scored_on_held_out_photographs(tiny_dataset, tmp_path, landmark_detector):
    from emotiontrack.model.augment import scene_views
    from emotiontrack.model.train import TrainConfig, train

    config = TrainConfig(data=tiny_dataset, output=tmp_path / "m.keras", epochs=1, batch_size=16, aligned_views=0.5,
                         scene_views=0.5)
    summary = train(config, landmark_detector, cache_dir=tmp_path / "cache")
    assert 0 <= summary["history"][0]["val_scene_accuracy"] <= 1
    identity = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (3, 1, 1))
    faces = np.full((3, 48, 48), 200, np.uint8)
    views = scene_views(faces, identity)
    np.testing.assert_array_equal(views, scene_views(faces, identity))  # the same views every time
    assert (views[:, 20:28, 20:28] > 150).all() and views[:, :3, :3].mean() < 190  # the face, and a scene at its corners
