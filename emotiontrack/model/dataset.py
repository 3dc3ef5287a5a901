"""Folder-per-emotion image datasets, from a directory or straight from a zip file.

Layouts understood (the Kaggle face-expression-recognition download, unzipped or not):
    ROOT/train/<emotion>/*.jpg and ROOT/validation/<emotion>/*.jpg   (ROOT may sit inside the zip)
    SPLIT/<emotion>/*.jpg                                             (one split, for evaluate/--val-dir)
Images are decoded to 48x48 grayscale uint8 and held in memory: FER2013's 32k faces take 75 MB.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from numpy.typing import NDArray

from emotiontrack.errors import InputError
from emotiontrack.media.stills import IMAGE_SUFFIXES

TRAIN_NAMES = ("train", "training")
VAL_NAMES = ("validation", "val", "publictest", "test")


@dataclass(frozen=True)
class Split:
    """One split in memory: images (n, 48, 48) uint8, labels (n,) int64 indexing `classes`."""

    images: NDArray[np.uint8]
    labels: NDArray[np.int64]
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> NDArray[np.int64]:
        return np.bincount(self.labels, minlength=len(self.classes))


@dataclass(frozen=True)
class _Tree:
    """A read-only file tree: POSIX relative paths plus a reader (a directory or a zip archive)."""

    files: tuple[PurePosixPath, ...]
    read: Callable[[PurePosixPath], bytes]
    name: str
    dirs: frozenset[PurePosixPath] = frozenset()  # every folder, empty ones included

    @classmethod
    def open(cls, path: Path) -> _Tree:
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_dir():
            entries = list(path.rglob("*"))
            files = tuple(PurePosixPath(p.relative_to(path).as_posix()) for p in entries if p.is_file())
            dirs = frozenset(PurePosixPath(p.relative_to(path).as_posix()) for p in entries if p.is_dir())
            return cls(files, lambda rel: (path / rel).read_bytes(), str(path), dirs)
        if zipfile.is_zipfile(path):
            archive = zipfile.ZipFile(path)
            files = tuple(PurePosixPath(n) for n in archive.namelist() if not n.endswith("/"))
            dirs = frozenset(PurePosixPath(n) for n in archive.namelist() if n.endswith("/"))
            return cls(files, lambda rel: archive.read(str(rel)), str(path), dirs)
        raise InputError(f"{path}: not a directory or a zip file")

    def subdirs(self, parent: PurePosixPath) -> set[str]:
        depth = len(parent.parts)
        below_files = {f.parts[depth] for f in self.files if len(f.parts) > depth + 1 and f.parts[:depth] == parent.parts}
        return below_files | {d.parts[depth] for d in self.dirs if len(d.parts) > depth and d.parts[:depth] == parent.parts}


def _images_by_class(tree: _Tree, split_dir: PurePosixPath) -> dict[str, list[PurePosixPath]]:
    depth = len(split_dir.parts)
    by_class: dict[str, list[PurePosixPath]] = {}
    for f in tree.files:
        if len(f.parts) == depth + 2 and f.parts[:depth] == split_dir.parts and not f.name.startswith("."):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                by_class.setdefault(f.parts[depth], []).append(f)
    for name in tree.subdirs(split_dir):
        by_class.setdefault(name, [])
    return by_class


def _find_split_dirs(tree: _Tree) -> tuple[PurePosixPath, PurePosixPath]:
    """Find the folder that holds both a train and a validation split (at the root or below)."""
    all_dirs = {parent for f in tree.files for parent in f.parents if parent != PurePosixPath()}
    for root in [PurePosixPath(), *sorted(all_dirs, key=lambda d: (len(d.parts), d))]:
        names = {n.lower(): n for n in tree.subdirs(root)}
        train = next((names[n] for n in TRAIN_NAMES if n in names), None)
        val = next((names[n] for n in VAL_NAMES if n in names), None)
        if train and val:
            return root / train, root / val
    raise InputError(f"{tree.name}: expected train/<emotion>/ and validation/<emotion>/ folders (or use --val-dir)")


def _decode(data: bytes, where: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise InputError(f"{where}: not a readable image")
    if image.dtype != np.uint8:  # 16-bit PNG/TIFF
        image = (image / 257).astype(np.uint8)
    if image.shape != (48, 48):
        image = cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA)
    return image


def _load(tree: _Tree, split_dir: PurePosixPath, classes: tuple[str, ...] | None, require_all: bool = True) -> Split:
    by_class = _images_by_class(tree, split_dir)
    where = f"{tree.name}/{split_dir}" if split_dir.parts else tree.name
    if not by_class:
        raise InputError(f"{where}: no <emotion>/ class folders with images")
    if classes is None:
        classes = tuple(sorted(by_class))
    unknown = sorted(set(by_class) - set(classes))
    if unknown:
        raise InputError(f"{where}: class folders {unknown} are not among {list(classes)}")
    empty = [c for c in classes if not by_class.get(c)]
    if empty and (require_all or len(empty) == len(classes)):
        raise InputError(f"{where}: class folder(s) {empty} missing or without images")
    images, labels = [], []
    for index, name in enumerate(classes):
        for f in sorted(by_class.get(name, [])):
            images.append(_decode(tree.read(f), f"{tree.name}/{f}"))
            labels.append(index)
    return Split(np.stack(images), np.asarray(labels, np.int64), classes, where)


def load_train_val(data: Path, val_dir: Path | None = None) -> tuple[Split, Split]:
    """Load the train and validation splits; class names (sorted folder names) come from train."""
    tree = _Tree.open(Path(data))
    if val_dir is None:
        train_dir, validation_dir = _find_split_dirs(tree)
        train = _load(tree, train_dir, None)
        return train, _load(tree, validation_dir, train.classes)
    train = _load(tree, PurePosixPath(), None)
    return train, load_split(val_dir, train.classes)


def load_split(path: Path, classes: tuple[str, ...] | None = None, require_all: bool = True,
               split: str | None = None) -> Split:
    """Load one split: a folder (or zip) of <emotion>/ folders, or one whose single subfolder is that;
    with `split`, the folder of that name anywhere inside (e.g. "validation" in the Kaggle zip).

    With `classes`, folder names must be among them; `require_all=False` allows some to be absent.
    """
    tree = _Tree.open(Path(path))
    if split is not None:
        found = sorted((d for d in tree.dirs | {f.parent for f in tree.files} if d.name == split), key=lambda d: len(d.parts))
        if not found:
            raise InputError(f"{tree.name}: no folder named {split!r}")
        return _load(tree, found[0], classes, require_all)
    split_dir = PurePosixPath()
    # Descend through wrapper folders (e.g. a zip holding images/test/<emotion>/).
    while len(tree.subdirs(split_dir)) == 1 and not _images_by_class(tree, split_dir).get(
        next(iter(tree.subdirs(split_dir)))
    ):
        split_dir = split_dir / next(iter(tree.subdirs(split_dir)))
    return _load(tree, split_dir, classes, require_all)
