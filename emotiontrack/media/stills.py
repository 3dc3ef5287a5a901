"""Stills: the images of a folder (or one image) read as frames, in name order."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emotiontrack.errors import InputError
from emotiontrack.types import Frame, VideoInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"}


def image_files(folder: Path, note: bool = True) -> list[Path]:
    """The images of a folder (sorted by name), or an image itself. Other files and subfolders are not
    analysed; with `note`, the log says so."""
    if folder.is_file():
        return [folder]
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    if note:
        skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if skipped:
            log.info("%s: skipping %d non-image file(s): %s", folder, len(skipped), ", ".join(skipped[:5]))
        subfolders = [p.name + "/" for p in entries if p.is_dir()]
        if subfolders:
            log.info("%s: not looking into %d subfolder(s) (give them as inputs of their own): %s", folder,
                     len(subfolders), ", ".join(subfolders[:5]))
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


def is_animated(path: Path) -> bool:
    """Whether an image file holds several frames (an animated GIF, WebP or PNG)."""
    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def read_image(path: Path) -> np.ndarray:
    """Any still PIL reads (RGB, grayscale, RGBA, CMYK, palette, 16-bit), EXIF-rotated, as RGB uint8."""
    try:
        with Image.open(path) as opened:
            if getattr(opened, "is_animated", False):
                log.info("%s: animated; in a folder its first frame is analysed (give it alone to analyse it all)", path)
            image: Image.Image = ImageOps.exif_transpose(opened)
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                array = np.nan_to_num(np.asarray(image, np.float64))
                peak = array.max(initial=0)
                # 16-bit values span 0-65535; float TIFFs usually 0-1 (scientific and HDR tools)
                scale = 257.0 if peak > 255 else 1 / 255 if image.mode == "F" and peak <= 1 else 1.0
                return np.repeat(np.clip(array / scale, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image.convert("RGBA"))
            return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def image_frames(info: VideoInfo) -> Iterator[Frame]:
    """The stills of an image folder (or a single image) as frames; unreadable ones are skipped with a warning."""
    for index, path in enumerate(image_files(info.path)):
        try:
            yield Frame(index, math.nan, read_image(path), name=path.name)
        except InputError as exc:
            log.warning("%s", exc)
