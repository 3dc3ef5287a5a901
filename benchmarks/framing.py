"""What the aligned crop's framing alone costs a model: the FER2013 validation faces as they are, against the
same faces warped by their own alignment (as `analyze` frames a face in a video), with no video in between.

    python benchmarks/framing.py [--model FILE ...]    # default: the shipped model; needs ../shared/datasets/fer2013.zip

For each model: accuracy on the faces MTCNN can align (clean, then aligned with the part beyond the picture
filled by repeating its edge or by a flat grey) and how often the two predictions agree. Video-path
accuracy on a clip of ~70 faces moves by several points with the ~16% of faces whose prediction changes;
on 3,259 faces this shows whether the framing costs anything on average. Writes reports/framing.md and .json.
Landmarks are cached (`emotiontrack train --aligned-views` finds the same ones; ~35 minutes the first time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from reporting import write_report

ROOT = Path(__file__).resolve().parents[1]
FER_ZIP = ROOT.parent / "shared" / "datasets" / "fer2013.zip"
# How the part of an aligned crop beyond the picture is filled; "in a scene": the face pasted through a soft
# ellipse into a held-out photograph first (model/scenes.py, as benchmarks/wild.py renders faces).
BORDERS = {"edge repeated": (cv2.BORDER_REPLICATE, 0), "flat grey": (cv2.BORDER_CONSTANT, 128), "in a scene": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", default=[ROOT / "models" / "emotiontrack.keras"])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "framing.md")
    args = parser.parse_args()
    if not FER_ZIP.is_file():
        sys.exit(f"needs {FER_ZIP}")

    from emotiontrack.model.augment import aligned_views, scene_views
    from emotiontrack.model.dataset import load_train_val
    from emotiontrack.model.landmarks import split_landmarks
    from emotiontrack.model.predictor import EmotionModel
    from emotiontrack.model.settings import LANDMARK_CACHE
    from emotiontrack.model.train import alignments
    from emotiontrack.stages.detect import LANDMARK_MIN_FACE, MTCNNDetector

    _, validation = load_train_val(FER_ZIP)
    landmarks = split_landmarks(validation, LANDMARK_CACHE, MTCNNDetector(min_face=LANDMARK_MIN_FACE))
    rows = []
    for path in args.model:
        classifier = EmotionModel.load(path)
        matrices = alignments(landmarks, classifier.geometry)  # the model's own canonical geometry
        alignable = np.isfinite(matrices).all(axis=(1, 2))
        labels = validation.labels[alignable]
        clean = classifier.predict(validation.images[alignable]).argmax(1)
        row = {"model": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
               "sha": classifier.model_sha256[:12], "faces": int(alignable.sum()),
               "clean_accuracy": float((clean == labels).mean())}
        for name, border in BORDERS.items():
            views = (scene_views(validation.images[alignable], matrices[alignable]) if border is None
                     else aligned_views(validation.images[alignable], matrices[alignable], *border))
            aligned = classifier.predict(views).argmax(1)
            row[name] = {"accuracy": float((aligned == labels).mean()), "agreement": float((aligned == clean).mean())}
        rows.append(row)
        print(row, flush=True)
    command = "python benchmarks/framing.py " + " ".join(sys.argv[1:])
    lines = ["# Framing: clean validation faces against the same faces aligned as in a video", "",
             f"Command: `{command.strip()}`", "",
             f"FER2013 PublicTest faces on which MTCNN finds plausible landmarks ({rows[0]['faces']} of {len(validation)}); "
             "*aligned*: each warped by the similarity that maps its landmarks onto the model's canonical ones, "
             "the part beyond the picture filled as named; *agree*: aligned and clean predictions are the same.", "",
             "| model | clean acc. | " + " | ".join(f"aligned, {b}: acc. | agree" for b in BORDERS) + " |",
             "| --- | --- | " + " | ".join("--- | ---" for _ in BORDERS) + " |"]
    for r in rows:
        lines.append(f"| `{r['model']}` (`{r['sha']}`) | {r['clean_accuracy']:.3f} | "
                     + " | ".join(f"{r[b]['accuracy']:.3f} | {r[b]['agreement']:.3f}" for b in BORDERS) + " |")
    write_report(args.out, lines, {"command": command, "rows": rows})


if __name__ == "__main__":
    main()
