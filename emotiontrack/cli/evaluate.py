"""`emotiontrack evaluate`: score a model on a folder-per-emotion split (tables, JSON, plots)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from emotiontrack.cli.progress import progress_bars
from emotiontrack.cli.signals import clean_up_on_signals


def add_parser(sub: argparse._SubParsersAction) -> None:
    from emotiontrack.config import PRECISIONS, default_model_path

    p = sub.add_parser("evaluate", help="score a model on a folder-per-emotion split",
                       description="Accuracy, macro-F1, per-class scores, confusion matrix, calibration (ECE), speed.")
    p.add_argument("data", type=Path, metavar="DATA_DIR", help="a split: <emotion>/ folders of images (a folder or zip)")
    p.add_argument("--model", type=Path, default=default_model_path(), help="model file (default: the shipped model)")
    p.add_argument("--split", metavar="NAME",
                   help="evaluate the folder of this name inside DATA_DIR (e.g. validation in the Kaggle zip)")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of tables")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write confusion.png and reliability.png into DIR")
    p.add_argument("--save", type=Path, metavar="FILE", help="also write the JSON report to FILE")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the CNN's arithmetic, as for analyze: auto is what analyze uses on this machine (default: auto)")
    p.add_argument("--tta", action="store_true",
                   help="average over test-time views (the image and four copies shifted by 2 px, each with its mirror "
                        "image): for reports; analyze classifies each face once")


def run(args: argparse.Namespace, console: Console) -> int:
    import json

    from rich.table import Table

    from emotiontrack.model.evaluate import evaluate, save_plots

    clean_up_on_signals()
    with progress_bars(console, transient=True) as progress:
        task = progress.add_task("evaluating", total=None)
        report = evaluate(args.data, args.model, on_batch=lambda n: progress.advance(task, n),
                          on_loaded=lambda n: progress.update(task, total=n), split_name=args.split, tta=args.tta,
                          precision=args.precision)
    if args.plots:
        report["plots"] = [str(p) for p in save_plots(report, args.plots)]
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return 0
    out = Console()
    out.print(f"{report['data']}: {report['n']} images, model {report['model']} ({report['precision']})")
    acc_lo, acc_hi = report["accuracy_ci95"]
    f1_lo, f1_hi = report["macro_f1_ci95"]
    out.print(f"accuracy {report['accuracy']:.4f} ({acc_lo:.3f}-{acc_hi:.3f})   macro-F1 {report['macro_f1']:.4f} "
              f"({f1_lo:.3f}-{f1_hi:.3f})   ECE {report['ece']:.4f}   NLL {report['nll']:.4f}   "
              f"{report['images_per_s']:.0f} images/s   (95% bootstrap intervals over images)")
    table = Table("class", "precision", "recall", "F1", "support")
    for name, scores in report["per_class"].items():
        table.add_row(name, f"{scores['precision']:.3f}", f"{scores['recall']:.3f}", f"{scores['f1']:.3f}", str(scores["support"]))
    out.print(table)
    confusion = Table("true \\ predicted", *report["classes"])
    for name, row in zip(report["classes"], report["confusion"]):
        confusion.add_row(name, *map(str, row))
    out.print(confusion)
    for path in report.get("plots", []):
        out.print(f"wrote {path}")
    return 0
