"""The seam where a face detector plugs in: what the pipeline asks of one (the glossary: stages/schedule.py).

`stages/detect.py` (MTCNN, facenet-pytorch) implements it; a second detector, or a faster runtime for
MTCNN's nets, is one new module that `pipeline.load_models` constructs. Everything downstream types against
`Detector` and sees only `Faces` records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from emotiontrack.types import Faces, Frame

if TYPE_CHECKING:
    import torch


class Detector(Protocol):
    """Finds faces: boxes in source pixels, clipped to the frame, with scores and five landmarks."""

    @property
    def device(self) -> torch.device:
        """Where it runs (the pipeline batches frames more on a GPU)."""
        ...

    def detect(self, frames: Sequence[Frame]) -> list[Faces]:
        """A whole-frame look at each frame (batched where the detector gains by it)."""
        ...

    def follow(self, frame: Frame, expected: NDArray[np.floating]) -> Faces:
        """Cheaply confirm and refine faces where the tracker expects them, boxes (k, 4); a face not confirmed
        is left out."""
        ...

    def detect_around(self, frame: Frame, expected: NDArray[np.floating]) -> Faces:
        """A closer, more permissive look around expected boxes (k, 4) the whole-frame look missed: at most
        one face per box."""
        ...
