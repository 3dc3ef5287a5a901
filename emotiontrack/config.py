"""Settings of an analysis run, with the defaults the CLI and the Python API share."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_NAME = "emotiontrack.keras"
CROPS = ("aligned", "box")  # how faces are cropped for the classifier (AnalyzeConfig.crop)
PRECISIONS = ("auto", "fp32", "bf16", "int8")  # the CNN's arithmetic (AnalyzeConfig.precision, model/predictor.py)
CALIBRATION_FACES = 2048  # training faces whose activations set the int8 ranges (`emotiontrack quantize`)


def default_model_path() -> Path:
    """The shipped model: inside the installed package, or models/ of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "models" / DEFAULT_MODEL_NAME, here.parent / "models" / DEFAULT_MODEL_NAME):
        if candidate.is_file():
            return candidate
    return here.parent / "models" / DEFAULT_MODEL_NAME


@dataclass(frozen=True)
class AnalyzeConfig:
    """Every setting that changes an analysis result; recorded in each timeline's metadata."""

    # Frames analysed per second of video (0 = every frame). Expressions last 0.5-4 s: two looks a second,
    # smoothed over a second, resolve them, and detection dominates the cost of a run (see reports/).
    sample_fps: float = 2.0
    min_face: float = 80.0  # smallest face to find, in source pixels (sets the detector's resolution)
    min_score: float = 0.7  # MTCNN probability below which a detection is dropped
    # Whole-frame detection at least this often (seconds; 0 = every analysed frame), to find new faces. In
    # between, known faces are followed by MTCNN's O-Net on crops where the tracker expects them (~10x
    # cheaper), and a frame where one is missed gets a whole-frame look at once. On FER composite clips
    # (benchmarks/fer_clip.py, three seeds) 2.0 found as many faces as 0 (recall 0.962 vs 0.952), with no id
    # switches and fewer ids, at a third of the detection cost; a new face is found within 2 s.
    detect_every_s: float = 2.0
    max_gap_s: float = 2.0  # a face unseen for up to this long keeps its id
    # Crop margin around the detector box, as a fraction of its side. 0 (the square of the box's longer side)
    # frames faces like FER2013: on upscaled validation faces MTCNN's box spans the whole image height, and
    # classifying such crops is as accurate as classifying the originals; every +0.1 costs ~5 points.
    margin: float = 0.0
    # "aligned": each face's five landmarks mapped onto the canonical positions of the model's training faces
    # (align.py); "box": the square of the detector's box (faces with implausible landmarks get it anyway).
    crop: str = "aligned"
    smooth_s: float = 1.0  # temporal smoothing window per face, seconds (0 = none)
    video: bool = True  # write the annotated video (annotated stills for image folders)
    device: str = "auto"  # auto | cpu | cuda
    # The CNN's arithmetic: auto = bf16 on CPUs with native bf16, int8 on other x86 CPUs (with the model's int8
    # calibration), float32 on a GPU (model/predictor.py); or fp32 | bf16 | int8. Recorded with the result.
    precision: str = "auto"
    threads: int = 1  # CPU threads for MTCNN and the CNN (ffmpeg decodes and encodes in its own processes)
    # Split each video into segments of this many seconds, analysed in parallel and stitched (--engine ray
    # only; 0 = one pass). Tracks are stitched in the overlaps, so ids and detections may differ from a pass.
    segment_s: float = 0.0
    model: Path = dataclasses.field(default_factory=default_model_path)

    def sample_interval_s(self, source_fps: float) -> float:
        """Seconds between analysed frames (NaN for stills)."""
        if self.sample_fps > 0:
            return 1.0 / self.sample_fps if not source_fps or self.sample_fps < source_fps else 1.0 / source_fps
        return 1.0 / source_fps if source_fps else float("nan")

    def settings(self) -> dict[str, object]:
        """JSON-friendly settings that change results (device and threads do not: they are left out; segment_s
        only when segments are used, so that single-pass results keep their identity)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()
                if k not in ("device", "threads") and not (k == "segment_s" and not v)}


@dataclass(frozen=True)
class LiveOptions:
    """How a live source (a network stream, a capture device) is captured; none of it changes how a frame is
    analysed. Defaults for `analyze udp://...` and its --flush-s, --stall-s, --wait-s, --duration, --reconnect."""

    flush_s: float = 5.0  # a Parquet part under <out>/<name>/live/ at least this often while rows come
    stall_s: float = 10.0  # once video has come, this long without any ends the capture (or reconnects)
    wait_s: float = 300.0  # how long to wait for the first video (an encoder started after us)
    duration_s: float | None = None  # end the capture after this many seconds of video (None: no limit)
    reconnect: bool = False  # open a dropped or stalled source again, with back-off, the timeline going on
    # Analysed frames wait at most this many seconds of video for the analysis; older ones are skipped.
    lag_s: float = 1.5


@dataclass(frozen=True)
class RayOptions:
    """Where and how `analyze --engine ray` runs (none of it changes a result)."""

    address: str | None = None  # None: start a local Ray on this machine's cores; "auto" or "ray://host:port": join
    cpus_per_worker: float = 1.0  # CPUs reserved per worker (its torch threads: AnalyzeConfig.threads)
    gpus_per_worker: float | None = None  # None: the cluster's GPUs shared among the workers (0 without GPUs)
    workers: int | None = None  # None: as many as the cluster's CPUs allow, at most one per input


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity, as containers and `taskset` set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_device(device: str) -> str:
    """'auto' becomes 'cuda' when torch sees a GPU, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from emotiontrack.errors import EmotionTrackError

        raise EmotionTrackError("--device cuda: torch sees no CUDA GPU")
    return device
