"""`emotiontrack quantize`: the int8 calibration of a model (`<model>.int8.json`), which analyze uses on x86
CPUs without native bf16, and how int8 compares with float32 on a validation split."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from emotiontrack.cli.signals import clean_up_on_signals


def add_parser(sub: argparse._SubParsersAction) -> None:
    from emotiontrack.config import CALIBRATION_FACES, default_model_path

    p = sub.add_parser("quantize", help="calibrate a model for int8 inference (AVX2 CPUs)",
                       description="Measure each layer's activation range on training faces and write "
                                   "<model>.int8.json beside the model; then compare int8 with float32.")
    p.add_argument("data", type=Path, metavar="DATA_DIR", help="folder-per-emotion dataset (a folder or zip)")
    p.add_argument("--model", type=Path, default=default_model_path(), help="model file (default: the shipped model)")
    p.add_argument("--split", default="train", metavar="NAME",
                   help="calibrate on the folder of this name inside DATA_DIR; '' for DATA_DIR itself (default: %(default)s)")
    p.add_argument("--faces", type=int, default=CALIBRATION_FACES, help="faces to calibrate on (default: %(default)s)")
    p.add_argument("--compare", metavar="NAME", default="validation",
                   help="then score int8 against float32 on this split; '' skips it (default: %(default)s)")


def run(args: argparse.Namespace, console: Console) -> int:
    from emotiontrack.model.evaluate import evaluate
    from emotiontrack.model.int8 import quantize

    clean_up_on_signals()
    path, calibration = quantize(args.model, args.data, args.split or None, args.faces)
    console.print(f"wrote {path} ({calibration['faces']} faces, {len(calibration['activation_ranges'])} layers)",
                  highlight=False)
    if args.compare:
        scores = {p: evaluate(args.data, args.model, split_name=args.compare, precision=p) for p in ("fp32", "int8")}
        fp32, q8 = scores["fp32"], scores["int8"]
        console.print(f"{args.compare}: accuracy fp32 {fp32['accuracy']:.4f}, int8 {q8['accuracy']:.4f} "
                      f"({q8['accuracy_ci95'][0]:.3f}-{q8['accuracy_ci95'][1]:.3f}); macro-F1 {fp32['macro_f1']:.4f} / "
                      f"{q8['macro_f1']:.4f}; {q8['images_per_s'] / fp32['images_per_s']:.2f}x the images per second",
                      highlight=False)
    return 0
