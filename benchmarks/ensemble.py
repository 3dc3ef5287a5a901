"""Members and ensembles of saved emotion models on FER2013 PublicTest: is an ensemble worth distilling?

    python benchmarks/ensemble.py --model A.keras B.keras ... [--tta]    # needs ../shared/datasets/fer2013.zip

Each model's calibrated probabilities (as `evaluate` computes them: mirror-averaged, and with `--tta` also
over evaluate's shifted views), then every combination of two or more members averaged. Writes
reports/training/ensemble.md and .json. PublicTest is the only split used to choose anything.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from reporting import write_report

ROOT = Path(__file__).resolve().parents[1]
FER_ZIP = ROOT.parent / "shared" / "datasets" / "fer2013.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", required=True)
    parser.add_argument("--tta", action="store_true", help="average evaluate's shifted views too")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "training" / "ensemble.md")
    args = parser.parse_args()
    if not FER_ZIP.is_file():
        sys.exit(f"needs {FER_ZIP}")

    from emotiontrack.model.dataset import load_split
    from emotiontrack.model.evaluate import TTA_OFFSETS, classification_report, predict_in_batches, shifted
    from emotiontrack.model.predictor import EmotionModel
    from emotiontrack.types import EMOTIONS

    split = load_split(FER_ZIP, EMOTIONS, split="validation")
    views = TTA_OFFSETS if args.tta else TTA_OFFSETS[:1]
    probs = {}
    for path in args.model:
        classifier = EmotionModel.load(path)
        probs[path.name] = np.mean([predict_in_batches(classifier, shifted(split.images, dx, dy))
                                    for dx, dy in views], axis=0)
    rows = []
    for size in range(1, len(probs) + 1):
        for members in itertools.combinations(probs, size):
            report = classification_report(np.mean([probs[m] for m in members], axis=0), split.labels, list(EMOTIONS))
            rows.append({"members": list(members), "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                         "nll": report["nll"], "ece": report["ece"]})
            print(rows[-1], flush=True)
    command = "python benchmarks/ensemble.py " + " ".join(sys.argv[1:])
    lines = ["# Ensembles of saved models on PublicTest", "", f"Command: `{command.strip()}`", "",
             f"{len(split)} PublicTest faces; each model's calibrated probabilities "
             f"({'mirror-averaged, over ' + str(len(views)) + ' shifted views' if args.tta else 'mirror-averaged'}), "
             "members' probabilities averaged.", "",
             "| members | accuracy | macro-F1 | NLL | ECE |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {' + '.join(r['members'])} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['nll']:.3f} "
                     f"| {r['ece']:.3f} |")
    write_report(args.out, lines, {"command": command, "rows": rows})


if __name__ == "__main__":
    main()
