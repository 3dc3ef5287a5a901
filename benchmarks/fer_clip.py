"""Accuracy of `emotiontrack analyze` on a clip like the acceptance clip, built from FER2013 validation faces.

    python benchmarks/fer_clip.py                  # 60 s, 720p25, seeds 1-3; needs ../shared/datasets/fer2013.zip

Four moving slots of upscaled FER2013 faces that change every 3 s (so the truth is known): one slot hidden
for a second, one entering late. Scores, at default settings: detection recall, false faces per analysed
frame, identity switches (a slot's id changing between sightings at most 1.5 s apart) and the share of
3-second segments whose majority emotion is the true one. Writes reports/fer_clip.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from reporting import write_report

ROOT = Path(__file__).resolve().parents[1]
FER_ZIP = ROOT.parent / "shared" / "datasets" / "fer2013.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--model", type=Path, help="model file (default: the shipped one)")
    parser.add_argument("--detect-every", type=float, help="whole-frame detection interval, seconds (default: the CLI's)")
    parser.add_argument("--crop", choices=("aligned", "box"), help="how faces are cropped (default: the CLI's)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "fer_clip.md")
    args = parser.parse_args()
    if not FER_ZIP.is_file():
        sys.exit(f"needs {FER_ZIP}")

    from scoring import score_timeline

    import emotiontrack
    from emotiontrack.config import AnalyzeConfig
    from emotiontrack.model.dataset import load_train_val
    from emotiontrack.pipeline import load_models
    from emotiontrack.synthetic import fer_composite, write_clip

    settings = {**({"model": args.model} if args.model else {}),
                **({"detect_every_s": args.detect_every} if args.detect_every is not None else {}),
                **({"crop": args.crop} if args.crop else {})}
    config = AnalyzeConfig(**settings)
    models = load_models(config)
    _, validation = load_train_val(FER_ZIP)
    clean = models.classifier.model.predict(validation.images).argmax(axis=1)  # EMOTIONS order == sorted class names
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            sprites, slots = fer_composite(validation, duration_s=args.seconds, seed=seed)
            clip = Path(work) / f"fer_{seed}.mp4"
            truth = write_clip(clip, sprites, size=(1280, 720), fps=25, duration_s=args.seconds)
            started = time.perf_counter()
            df = emotiontrack.analyze(clip, models=models, **settings)
            score = score_timeline(df, truth, slots, validation.classes, sample_fps=config.sample_fps, clean=clean)
            rows.append({"seed": seed, "analyse_s": time.perf_counter() - started, **score})
            print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/fer_clip.py " + " ".join(sys.argv[1:])
    lines = ["# Accuracy on FER2013 composite clips", "", f"Command: `{command.strip()}`", "",
             f"{args.seconds:.0f} s, 1280x720, 25 fps, four slots of FER2013 validation faces (upscaled to 180-220 px,",
             "changing every 3 s; one slot hidden for 1 s, one entering at 30%); default settings",
             f"(fps {config.sample_fps}, min-face {config.min_face}, detect-every {config.detect_every_s}, crop {config.crop}, margin {config.margin}); model `{models.classifier.model_sha256[:12]}`.", "",
             "| seed | recall | false faces / frame | id switches | ids | emotion agreement (3-s majority) | segments "
             "| detected faces right | clean crops right | aligned |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['recall']:.3f} | {r['false_per_frame']:.3f} | {r['id_switches']} | {r['ids']} | "
                     f"{r['emotion_agreement']:.3f} | {r['segments']} | {r['face_accuracy']:.3f} | {r['clean_accuracy']:.3f} "
                     f"| {r['aligned_share']:.2f} |")
    keys = ("recall", "false_per_frame", "id_switches", "emotion_agreement", "face_accuracy", "clean_accuracy")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    lines.append(f"| mean | {mean['recall']:.3f} | {mean['false_per_frame']:.3f} | {mean['id_switches']:.1f} | | "
                 f"{mean['emotion_agreement']:.3f} | | {mean['face_accuracy']:.3f} | {mean['clean_accuracy']:.3f} | |")
    write_report(args.out, lines, {"command": command, "rows": rows})


if __name__ == "__main__":
    main()
