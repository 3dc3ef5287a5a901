"""Faces that belong to their scene: what the video path loses against clean crops, rendering by rendering.

    python benchmarks/wild.py                      # needs ../shared/datasets/fer2013.zip; ~15 min on 2 cores
    python benchmarks/wild.py --clips /tmp/wild    # keep the rendered clips there (and reuse them)

Each rendering is a clip of 1280x720 at 25 fps in which six slots (a 3x2 grid) each show a new FER2013
PublicTest face every 3 s, every face a different one (540 faces in 270 s); each face moves across its cell
and its size breathes by ±20% over 4 s. The renderings:

- `tiles`: the face upscaled to ~180 px with a quarter of its side of repeated border around it, on grey;
- `tilted`: small tiles (~120 px) tilted by up to 15°;
- `blended`: the face pasted through a random soft ellipse (its edge a Gaussian blur of 0.1-0.3 of the face's
  side, so the photograph shows through well inside the face) into a photograph (scikit-image's coffee,
  motorcycle and astronaut photographs, never trained on: model/scenes.py HELD_OUT_PHOTOS), the photograph
  replacing its cheeks, chin and forehead edges, tilted by up to 10°, ~140 px, H.264 CRF 28.

`analyze` runs at its defaults (2 analysed frames a second, following faces between whole-frame looks). A
detection whose centre lies in a face's box is that face's; its emotion is compared with the truth, and
with what the model says of the same face's clean 48x48 image. The loss is clean minus video accuracy over
the matched detections; its 95% interval comes from a paired bootstrap over faces (the faces are resampled,
each with all its detections and its clean answer). Writes reports/wild.md and .json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from reporting import write_report

ROOT = Path(__file__).resolve().parents[1]
FER_ZIP = ROOT.parent / "shared" / "datasets" / "fer2013.zip"
SIZE, FPS, CHANGE_S, BREATH_S = (1280, 720), 25, 3.0, 4.0
GRID = (3, 2)  # slots across and down
PAD = 24  # repeated border around each 48x48 face in its source image, so a warp never runs out of face
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Rendering:
    name: str
    side: float  # face side in pixels, before breathing
    border: float  # tiles: repeated border, as a share of the face's side; 0 for faces blended through an ellipse
    max_tilt_deg: float
    crf: int
    photo: bool  # a photograph behind the faces (else a grey gradient)


RENDERINGS = {
    "tiles": Rendering("tiles", 180, 0.25, 0.0, 23, False),
    "tilted": Rendering("tilted", 120, 0.25, 15.0, 23, False),
    "blended": Rendering("blended", 140, 0.0, 10.0, 28, True),
}


@dataclass
class Face:
    index: int  # in the PublicTest split
    source: np.ndarray  # (48 + 2 PAD)^2 grayscale: the face with its edge repeated
    mask: np.ndarray  # the same size, float32: where the face covers the scene
    tilt_deg: float
    phase: float


def face_source(face48: np.ndarray, r: Rendering, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from emotiontrack.model.scenes import ELLIPSE_AXES, FEATHER, soft_ellipse

    source = cv2.copyMakeBorder(face48, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    side = source.shape[0]
    if r.border > 0:  # a tile: the face and its repeated edge, a hard square
        mask = np.zeros((side, side), np.float32)
        b = round(48 * r.border)
        mask[PAD - b : PAD + 48 + b, PAD - b : PAD + 48 + b] = 1.0
        return source, mask
    centre = (PAD + 23.5, PAD + 23.5)
    axes = (rng.uniform(*ELLIPSE_AXES[0]) * 48, rng.uniform(*ELLIPSE_AXES[1]) * 48)
    return source, soft_ellipse(side, centre, axes, rng.uniform(*FEATHER) * 48, gaussian=True)


def background(r: Rendering, t: float) -> np.ndarray:
    """The frame behind the faces (RGB uint8): a grey gradient, or a photograph changing every 90 s."""
    width, height = SIZE
    if not r.photo:
        row = np.linspace(50, 90, width).astype(np.uint8)
        return np.repeat(np.repeat(row[None, :, None], height, 0), 3, 2)
    return _photos()[int(t // 90) % len(_photos())]


_PHOTOS: list[np.ndarray] = []


def _photos() -> list[np.ndarray]:
    """The held-out photographs, each cropped and resized to cover the frame (RGB uint8)."""
    if not _PHOTOS:
        from skimage import data

        width, height = SIZE
        for image in (data.coffee(), data.stereo_motorcycle()[0], data.astronaut()[250:, :]):
            scale = max(width / image.shape[1], height / image.shape[0])
            big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            y, x = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
            _PHOTOS.append(np.ascontiguousarray(big[y : y + height, x : x + width]))
    return _PHOTOS


def place(frame: np.ndarray, face: Face, side: float, centre: tuple[float, float], angle: float) -> tuple[int, ...]:
    """Warp the face (and its mask) into the frame; returns the face square's bounding box (x1, y1, x2, y2)."""
    n = face.source.shape[0]
    m = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), angle, side / 48)
    m[:, 2] += (centre[0] - (n - 1) / 2, centre[1] - (n - 1) / 2)
    corners = np.array([[PAD - 0.5, PAD - 0.5], [PAD + 47.5, PAD - 0.5], [PAD - 0.5, PAD + 47.5], [PAD + 47.5, PAD + 47.5]])
    outer = np.array([[-0.5, -0.5], [n - 0.5, -0.5], [-0.5, n - 0.5], [n - 0.5, n - 0.5]]) @ m[:, :2].T + m[:, 2]
    x0, y0 = (int(max(0, math.floor(v))) for v in outer.min(axis=0))
    x1, y1 = (min(lim, int(math.ceil(v))) for v, lim in zip(outer.max(axis=0), SIZE))
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0, 0)
    local = m.copy()
    local[:, 2] -= (x0, y0)
    roi = (x1 - x0, y1 - y0)
    pixels = cv2.warpAffine(face.source, local, roi, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(face.mask, local, roi, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    region = frame[y0:y1, x0:x1]
    blended = alpha * pixels.astype(np.float32)[..., None] + (1 - alpha) * region
    region[:] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    box = corners @ m[:, :2].T + m[:, 2]
    return tuple(int(round(v)) for v in (*box.min(axis=0), *box.max(axis=0)))


def render_clip(path: Path, r: Rendering, validation, seconds: float, seed: int) -> list[dict]:
    """Encode the rendering; returns the truth: per frame, per visible face, its index and box."""
    from emotiontrack.media.tools import ffmpeg_path

    rng = np.random.default_rng([seed, list(RENDERINGS).index(r.name)])
    slots = GRID[0] * GRID[1]
    periods = math.ceil(seconds / CHANGE_S)
    picks = rng.permutation(len(validation))[: slots * periods]
    faces = []
    for index in picks:
        source, mask = face_source(validation.images[index], r, rng)
        faces.append(Face(int(index), source, mask, rng.uniform(-1, 1) * r.max_tilt_deg, rng.uniform(0, 2 * np.pi)))
    cell_w, cell_h = SIZE[0] / GRID[0], SIZE[1] / GRID[1]
    # Half the widest a face (with its border or ellipse) gets: at its largest, turned by its largest tilt.
    tilt = math.radians(r.max_tilt_deg)
    reach = 0.5 * r.side * 1.2 * (1 + 2 * max(r.border, 0.1)) * (math.cos(tilt) + math.sin(tilt))
    args = [ffmpeg_path(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{SIZE[0]}x{SIZE[1]}",
            "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(r.crf), "-pix_fmt", "yuv420p",
            str(path)]
    truth = []
    with subprocess.Popen(args, stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        for i in range(round(seconds * FPS)):
            t = i / FPS
            period = int(t // CHANGE_S)
            frame = background(r, t).copy()
            visible = []
            for slot in range(slots):
                face = faces[period * slots + slot]
                u = (t % CHANGE_S) / CHANGE_S  # across its cell during its 3 s
                side = r.side * (1 + 0.2 * math.sin(2 * math.pi * t / BREATH_S + face.phase))
                col, row = slot % GRID[0], slot // GRID[0]
                travel = max(0.0, cell_w - 2 * reach)  # never into the next cell: slots do not overlap
                centre = (col * cell_w + reach + travel * u, row * cell_h + cell_h / 2)
                box = place(frame, face, side, centre, face.tilt_deg)
                visible.append({"face": face.index, "box": box})
            proc.stdin.write(frame.tobytes())
            truth.append(visible)
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed to write {path}")
    return truth


def match(df, truth: list[list[dict]], sample_fps: float) -> tuple[list[dict], int]:
    """Per analysed frame, each visible face's detection (centre inside its box); the matches and the number
    of (analysed frame, visible face) pairs."""
    from emotiontrack.media.frames import FrameSampler

    sampler = FrameSampler(sample_fps)
    rows = df.groupby("frame")
    matches, visible = [], 0
    for frame_index, faces in enumerate(truth):
        if not sampler.take(frame_index / FPS):
            continue
        visible += len(faces)
        if frame_index not in rows.groups:
            continue
        dets = rows.get_group(frame_index)
        cx, cy = ((dets.x1 + dets.x2) / 2).to_numpy(), ((dets.y1 + dets.y2) / 2).to_numpy()
        for face in faces:
            x1, y1, x2, y2 = face["box"]
            inside = np.flatnonzero((cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2))
            if len(inside):
                det = dets.iloc[int(inside[0])]
                matches.append({"face": face["face"], "emotion": str(det.emotion), "aligned": bool(det.aligned),
                                **{k: float(det[k]) for k in ("face_px", "align_error") if k in det}})
    return matches, visible


def paired_loss(matches: list[dict], labels, clean, classes, seed: int = 0) -> dict:
    """Clean minus video accuracy over the matched detections, with a 95% paired bootstrap over faces."""
    faces = np.array([m["face"] for m in matches])
    video = np.array([m["emotion"] == classes[labels[f]] for m, f in zip(matches, faces)], np.float64)
    clean_right = (clean[faces] == labels[faces]).astype(np.float64)
    ids, inverse = np.unique(faces, return_inverse=True)
    per_face = np.stack([np.bincount(inverse, weights=w, minlength=len(ids)) for w in (video, clean_right,
                                                                                      np.ones_like(video))])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), (BOOTSTRAP, len(ids)))
    sums = per_face[:, draws].sum(axis=2)  # (3, BOOTSTRAP): video right, clean right, detections
    losses = (sums[1] - sums[0]) / sums[2]
    return {"faces": int(len(ids)), "detections": int(len(matches)), "video_accuracy": float(video.mean()),
            "clean_accuracy": float(clean_right.mean()), "loss": float(clean_right.mean() - video.mean()),
            "loss_ci95": [float(v) for v in np.percentile(losses, [2.5, 97.5])]}


def _typed(default, text: str):
    """A setting's value from the command line, of its default's type."""
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    return type(default)(text)


ALIGN_ERROR_BINS = (0.0, 1.0, 1.5, 2.0, math.inf)  # 48-px units
FACE_PX_BINS = (0.0, 100.0, 140.0, 180.0, math.inf)


def by_quality(matches: list[dict], column: str, bins: tuple[float, ...], labels, clean, classes) -> list[dict]:
    """Video and clean accuracy of the detections whose `column` falls in each bin (NaN: box crops)."""
    values = np.array([m[column] for m in matches], np.float64)
    out = []
    for lo, hi in [(math.nan, math.nan), *zip(bins, bins[1:])]:
        inside = np.isnan(values) if math.isnan(lo) else (values >= lo) & (values < hi)
        picked = [m for m, keep in zip(matches, inside) if keep]
        if picked:
            faces = np.array([m["face"] for m in picked])
            out.append({"bin": "NaN" if math.isnan(lo) else f"{lo:g}-{hi:g}", "detections": len(picked),
                        "video_accuracy": float(np.mean([m["emotion"] == classes[labels[f]] for m, f in zip(picked, faces)])),
                        "clean_accuracy": float(np.mean(clean[faces] == labels[faces]))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=270.0, help="clip length (6 new faces every 3 s)")
    parser.add_argument("--renderings", nargs="+", choices=sorted(RENDERINGS), default=list(RENDERINGS))
    parser.add_argument("--model", type=Path, help="model file (default: the shipped one)")
    parser.add_argument("--clips", type=Path, help="folder to keep the rendered clips in and reuse them from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="analyze settings to change (AnalyzeConfig fields), e.g. crop=box")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "wild.md")
    args = parser.parse_args()
    if not FER_ZIP.is_file():
        sys.exit(f"needs {FER_ZIP}")

    import tempfile

    import emotiontrack
    from emotiontrack.config import AnalyzeConfig
    from emotiontrack.model.dataset import load_split
    from emotiontrack.pipeline import load_models
    from emotiontrack.types import EMOTIONS

    overrides = {k: _typed(getattr(AnalyzeConfig(), k), v) for k, v in (s.split("=", 1) for s in args.set)}
    settings = {**({"model": args.model} if args.model else {}), **overrides, "video": False}
    config = AnalyzeConfig(**settings)
    models = load_models(config)
    validation = load_split(FER_ZIP, tuple(sorted(EMOTIONS)), split="validation")
    clean = models.classifier.model.predict(validation.images).argmax(axis=1)  # EMOTIONS order == sorted names
    folder = args.clips or Path(tempfile.mkdtemp(prefix="wild-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.renderings:
        r = RENDERINGS[name]
        clip, truth_file = folder / f"{name}-{args.seconds:.0f}s-{args.seed}.mp4", folder / f"{name}-{args.seconds:.0f}s-{args.seed}.json"
        if not (clip.is_file() and truth_file.is_file()):
            started = time.perf_counter()
            truth_file.write_text(json.dumps(render_clip(clip, r, validation, args.seconds, args.seed)))
            print(f"rendered {clip} in {time.perf_counter() - started:.0f} s", flush=True)
        truth = json.loads(truth_file.read_text())
        started = time.perf_counter()
        df = emotiontrack.analyze(clip, models=models, **settings)
        seconds = time.perf_counter() - started
        matches, visible = match(df, truth, config.sample_fps)
        row = {"rendering": name, **r.__dict__, "analyse_s": seconds, "recall": len(matches) / max(visible, 1),
               "aligned_share": float(np.mean([m["aligned"] for m in matches])) if matches else 0.0,
               **paired_loss(matches, validation.labels, clean, validation.classes, args.seed)}
        if matches and "align_error" in matches[0]:
            row["by_align_error"] = by_quality(matches, "align_error", ALIGN_ERROR_BINS, validation.labels, clean,
                                               validation.classes)
            row["by_face_px"] = by_quality(matches, "face_px", FACE_PX_BINS, validation.labels, clean, validation.classes)
        rows.append(row)
        print(json.dumps(row), flush=True)
    command = "python benchmarks/wild.py " + " ".join(sys.argv[1:])
    lines = ["# Faces in scenes: the video path against clean crops", "", f"Command: `{command.strip()}`", "",
             f"{args.seconds:.0f} s per rendering, 1280x720, 25 fps, six slots of FER2013 PublicTest faces (a new one every "
             f"{CHANGE_S:.0f} s, each face once), sizes breathing ±20%; analyze defaults (fps {config.sample_fps}, "
             f"min-face {config.min_face}, detect-every {config.detect_every_s}, crop {config.crop}"
             + "".join(f", {k} {v}" for k, v in overrides.items()) + f"); model `{models.classifier.model_sha256[:12]}`.",
             "Loss = clean-crop accuracy minus video accuracy on the same matched detections; 95% interval: paired "
             "bootstrap over faces.", "",
             "| rendering | faces | detections | recall | aligned | clean crops | video | loss (points) | 95% interval |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lo, hi = row["loss_ci95"]
        lines.append(f"| {row['rendering']} | {row['faces']} | {row['detections']} | {row['recall']:.3f} | "
                     f"{row['aligned_share']:.2f} | {row['clean_accuracy']:.3f} | {row['video_accuracy']:.3f} | "
                     f"{100 * row['loss']:.1f} | {100 * lo:.1f} to {100 * hi:.1f} |")
    for column, bins in (("align_error", ALIGN_ERROR_BINS), ("face_px", FACE_PX_BINS)):
        names = ["NaN", *(f"{lo:g}-{hi:g}" for lo, hi in zip(bins, bins[1:]))]
        lines += ["", f"By `{column}` (detections: video / clean accuracy; NaN: box crops):", "",
                  "| rendering | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for row in rows:
            cells = {b["bin"]: f"{b['detections']}: {b['video_accuracy']:.3f} / {b['clean_accuracy']:.3f}"
                     for b in row.get(f"by_{column}", [])}
            lines.append(f"| {row['rendering']} | " + " | ".join(cells.get(name, "") for name in names) + " |")
    write_report(args.out, lines, {"command": command, "rows": rows})


if __name__ == "__main__":
    main()
