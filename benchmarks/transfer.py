"""How much accuracy the video path costs: FER2013 validation faces rendered the ways video shows them.

    python benchmarks/transfer.py                  # needs ../shared/datasets/fer2013.zip; writes reports/transfer.md

Each rendering draws every sampled validation face (one per frame, on a 640x480 frame) at some size, with
some context around it (the face image's own border repeated, a photograph, a solid colour), some tilt,
blur and H.264 quality, and runs the video through `analyze` (decode, detect, crop, classify; every frame,
a whole-frame look each frame, no smoothing) once with aligned crops and once with box crops. Per row:
faces detected, the clean accuracy of those faces (the 48x48 originals through the same model), the video
path's accuracy on them, and how often the video path and the clean crop name the same emotion.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from reporting import write_report

ROOT = Path(__file__).resolve().parents[1]
FER_ZIP = ROOT.parent / "shared" / "datasets" / "fer2013.zip"
FRAME = (640, 480)


@dataclass(frozen=True)
class Rendering:
    name: str
    upscale: float = 4.0
    context_px: int = 40  # around the (upscaled) face image
    context: str = "replicate"  # replicate | photo | solid
    tilt_deg: float = 0.0  # each face turned by a random angle in [-tilt, tilt]
    blur_sigma: float = 0.0  # Gaussian blur of the upscaled face, pixels
    crf: int = 18


RENDERINGS = [
    Rendering("2x, 40 px border", upscale=2),
    Rendering("4x, 40 px border"),
    Rendering("6x, 40 px border", upscale=6),
    Rendering("4x, no context", context_px=0),
    Rendering("4x, 80 px border", context_px=80),
    Rendering("4x, 40 px photo", context="photo"),
    Rendering("4x, 80 px photo", context="photo", context_px=80),
    Rendering("4x, 40 px solid colour", context="solid"),
    Rendering("4x, tilt up to 10 deg", tilt_deg=10),
    Rendering("4x, tilt up to 20 deg", tilt_deg=20),
    Rendering("4x, CRF 23", crf=23),
    Rendering("4x, CRF 35", crf=35),
    Rendering("4x, blur sigma 2 px", blur_sigma=2.0),
    Rendering("3x, 60 px photo, tilt 15, CRF 28", upscale=3, context="photo", context_px=60, tilt_deg=15, crf=28),
]


def _photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.coffee())  # no faces in it


def render_face(face48: np.ndarray, r: Rendering, rng: np.random.Generator, photo: np.ndarray) -> np.ndarray:
    """One 640x480 RGB frame with the face (and its context) at the centre of a grey gradient."""
    side = round(48 * r.upscale)
    face = cv2.resize(face48, (side, side), interpolation=cv2.INTER_CUBIC)
    if r.blur_sigma:
        face = cv2.GaussianBlur(face, (0, 0), r.blur_sigma)
    face = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
    c = r.context_px
    if r.context == "replicate":
        patch = cv2.copyMakeBorder(face, c, c, c, c, cv2.BORDER_REPLICATE)
    else:
        if r.context == "photo":
            y, x = rng.integers(0, photo.shape[0] - side - 2 * c), rng.integers(0, photo.shape[1] - side - 2 * c)
            patch = photo[y : y + side + 2 * c, x : x + side + 2 * c].copy()
        else:
            patch = np.empty((side + 2 * c, side + 2 * c, 3), np.uint8)
            patch[:] = (40, 120, 200)
        patch[c : c + side, c : c + side] = face
    width, height = FRAME
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = np.linspace(50, 90, width, dtype=np.float32).astype(np.uint8)[None, :, None]
    if r.tilt_deg:
        angle = float(rng.uniform(-r.tilt_deg, r.tilt_deg))
        h, w = patch.shape[:2]
        turn = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), turn, (w, h))
        patch = cv2.warpAffine(patch, turn, (w, h), flags=cv2.INTER_LINEAR)
    else:
        mask = np.full(patch.shape[:2], 255, np.uint8)
    h, w = patch.shape[:2]
    y, x = (height - h) // 2, (width - w) // 2
    region = frame[y : y + h, x : x + w]
    keep = mask[..., None] > 127
    frame[y : y + h, x : x + w] = np.where(keep, patch, region)
    return frame


def write_video(path: Path, frames: list[np.ndarray], crf: int, fps: int = 5) -> None:
    from emotiontrack.media.tools import ffmpeg_path

    width, height = FRAME
    args = [ffmpeg_path(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
            "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(args, input=b"".join(f.tobytes() for f in frames), check=True)


def score(df, n: int, labels: np.ndarray, clean: np.ndarray, classes: list[str]) -> dict:
    """Per frame, the surest face; accuracy against the labels and agreement with the clean predictions."""
    best = df.sort_values("det_score", ascending=False).drop_duplicates("frame")
    best = best[(best.frame >= 0) & (best.frame < n)]
    frames = best.frame.to_numpy()
    predicted = np.array([classes.index(e) for e in best.emotion])
    return {"detected": len(frames), "clean_accuracy": float((clean[frames] == labels[frames]).mean()),
            "video_accuracy": float((predicted == labels[frames]).mean()),
            "agreement": float((predicted == clean[frames]).mean()),
            "aligned_share": float(best.aligned.mean()) if "aligned" in best else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=300, help="validation faces per rendering (default: %(default)s)")
    parser.add_argument("--model", type=Path, help="model file (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "transfer.md")
    args = parser.parse_args()
    if not FER_ZIP.is_file():
        sys.exit(f"needs {FER_ZIP}")

    import emotiontrack
    from emotiontrack.config import AnalyzeConfig
    from emotiontrack.model.dataset import load_split
    from emotiontrack.pipeline import Models, load_models
    from emotiontrack.stages.classify import EmotionClassifier
    from emotiontrack.types import EMOTIONS

    base = AnalyzeConfig(**({"model": args.model} if args.model else {}))
    settings = dict(sample_fps=0, detect_every_s=0, smooth_s=0, video=False, model=base.model)
    aligned = load_models(AnalyzeConfig(**settings, crop="aligned"))
    boxed = Models(aligned.detector, EmotionClassifier(aligned.classifier.model, crop="box"))
    validation = load_split(FER_ZIP, tuple(sorted(EMOTIONS)), split="validation")
    classes = list(validation.classes)
    rng = np.random.default_rng(args.seed)
    picks = np.sort(rng.permutation(len(validation))[: args.faces])
    faces, labels = validation.images[picks], validation.labels[picks]
    clean_probs = aligned.classifier.model.predict(faces)  # EMOTIONS order == sorted class names
    clean = clean_probs.argmax(axis=1)
    photo = _photo()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for r in RENDERINGS:
            frames = [render_face(face, r, np.random.default_rng([args.seed, i]), photo) for i, face in enumerate(faces)]
            clip = Path(work) / "clip.mp4"
            write_video(clip, frames, r.crf)
            row = {"rendering": r.name, **{k: v for k, v in r.__dict__.items() if k != "name"}}
            for crop, models in (("aligned", aligned), ("box", boxed)):
                started = time.perf_counter()
                df = emotiontrack.analyze(clip, models=models, **settings, crop=crop)
                row[crop] = {**score(df, len(faces), labels, clean, classes), "seconds": time.perf_counter() - started}
            rows.append(row)
            print(json.dumps(row), flush=True)
    command = "python benchmarks/transfer.py " + " ".join(sys.argv[1:])
    clean_all = float((clean == labels).mean())
    lines = ["# Transfer: the video path against clean crops", "", f"Command: `{command.strip()}`", "",
             f"{len(faces)} FER2013 validation faces (seed {args.seed}; clean accuracy of all of them {clean_all:.3f}), "
             f"model `{aligned.classifier.model_sha256[:12]}`. Each face is one frame of a {FRAME[0]}x{FRAME[1]} H.264 "
             "video, analysed at every frame with a whole-frame look and no smoothing; the surest face per frame is "
             "scored. *clean*: the same faces' 48x48 originals through the model; *agree*: the video path names the "
             "clean crop's emotion.", "",
             "| rendering | detected | clean acc. | aligned: acc. | agree | aligned share | box: acc. | agree |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        a, b = row["aligned"], row["box"]
        lines.append(f"| {row['rendering']} | {a['detected']} | {a['clean_accuracy']:.3f} | {a['video_accuracy']:.3f} | "
                     f"{a['agreement']:.3f} | {a['aligned_share']:.2f} | {b['video_accuracy']:.3f} | {b['agreement']:.3f} |")
    mean = {k: np.mean([row[crop][m] for row in rows]) for k, (crop, m) in {
        "clean": ("aligned", "clean_accuracy"), "aligned": ("aligned", "video_accuracy"),
        "aligned_agree": ("aligned", "agreement"), "box": ("box", "video_accuracy"), "box_agree": ("box", "agreement")}.items()}
    lines.append(f"| mean | | {mean['clean']:.3f} | {mean['aligned']:.3f} | {mean['aligned_agree']:.3f} | | "
                 f"{mean['box']:.3f} | {mean['box_agree']:.3f} |")
    write_report(args.out, lines, {"command": command, "faces": len(faces), "rows": rows})


if __name__ == "__main__":
    main()
