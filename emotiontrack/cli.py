"""Command line: `emotiontrack analyze | train | evaluate`.

Each command parses its options, sets up logging and progress display, calls the library and maps
`EmotionTrackError` to a one-line message and a non-zero exit. Heavy modules are imported inside the
commands so that `--help` and option errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from emotiontrack import __version__
from emotiontrack.errors import EmotionTrackError

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs exactly as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()

log = logging.getLogger("emotiontrack")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _add_train(sub: argparse._SubParsersAction) -> None:
    from emotiontrack.network import ARCHITECTURES
    from emotiontrack.train import OPTIMIZERS, TrainConfig

    d = TrainConfig(data=Path())
    p = sub.add_parser("train", help="train the emotion CNN on a folder-per-emotion dataset",
                       description="Train the emotion CNN, checkpointing every epoch, then calibrate and save it.")
    p.add_argument("data", type=Path, metavar="DATA_DIR",
                   help="dataset: a folder or zip holding train/<emotion>/ and validation/<emotion>/ "
                        "(or only <emotion>/ folders when --val-dir is given)")
    p.add_argument("-o", "--output", type=Path, default=d.output,
                   help="model file to write (default: %(default)s); checkpoints go to OUTPUT.ckpt/")
    p.add_argument("--val-dir", type=Path, help="validation split (<emotion>/ folders), if not inside DATA_DIR")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default=d.architecture, dest="architecture",
                   help="network size (see emotiontrack/network.py; default: %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=d.epochs, help="epochs to train (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help="images per step (default: %(default)s)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help="sgd (Nesterov momentum 0.9) or adamw (default: %(default)s)")
    p.add_argument("--lr", type=_positive_float, default=d.learning_rate, dest="learning_rate",
                   help="peak learning rate after the warm-up; cosine decay to zero follows (default: %(default)s)")
    p.add_argument("--weight-decay", type=_non_negative_float, default=d.weight_decay,
                   help="weight decay of the convolution and dense weights (default: %(default)s)")
    p.add_argument("--label-smoothing", type=_probability, default=d.label_smoothing,
                   help="share of each target spread over all classes (default: %(default)s)")
    p.add_argument("--class-weight-power", type=_non_negative_float, default=d.class_weight_power,
                   help="loss weight per class = (largest class / class size) ** POWER; 0 ignores imbalance "
                        "(default: %(default)s)")
    p.add_argument("--mixup", type=_non_negative_float, default=d.mixup,
                   help="mix pairs of images with Beta(A, A) weights; 0 turns it off (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed for init, shuffling, augmentation (default: %(default)s)")
    p.add_argument("--limit", type=_positive_int, help="train on at most this many images (quick trials)")
    p.add_argument("--init", type=Path, metavar="CHECKPOINT",
                   help="start from the weights of an earlier run's OUTPUT.ckpt/last.pt (fine-tuning, a second "
                        "learning-rate cycle) instead of random weights")
    p.add_argument("--no-flip-average", action="store_false", dest="flip_average",
                   help="save a model that classifies each face once, not averaged with its mirror image (half the cost)")
    p.add_argument("--fp32", action="store_false", dest="bf16",
                   help="train in float32 (default: bf16 autocast, much faster on CPUs with bf16 instructions)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose checkpoint is in OUTPUT.ckpt/ (its settings are kept; "
                        "run after the last epoch, it only calibrates and saves the model again)")


def _run_train(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from emotiontrack.train import TrainConfig, load_checkpoint_config, train

    if args.resume:
        config = dataclasses.replace(load_checkpoint_config(args.output), flip_average=args.flip_average)
    else:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("epoch", total=None, metrics="")

        def on_batch(step: int, steps: int, logs: dict) -> None:
            progress.update(task, completed=step, total=steps,
                            metrics=f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}")

        def on_epoch(epoch: int, logs: dict) -> None:
            progress.console.print(
                f"epoch {epoch + 1}/{config.epochs}: loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
                f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f} "
                f"val_macro_f1 {logs['val_macro_f1']:.4f}", soft_wrap=True)
            progress.update(task, description=f"epoch {epoch + 2}", completed=0)

        summary = train(config, resume=args.resume, on_batch=on_batch, on_epoch=on_epoch)
    console.print(f"wrote {summary['model']} (temperature {summary['temperature']:.3f})", soft_wrap=True)
    return 0


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    from emotiontrack.config import CROPS, AnalyzeConfig

    d = AnalyzeConfig()
    p = sub.add_parser("analyze", help="analyse videos and image folders into per-face emotion timelines",
                       description="Detect, track and classify every face; write <out>/<input>/timeline.parquet per input.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="video files (any format ffmpeg reads) or image folders")
    p.add_argument("-o", "--output", type=Path, default=Path("emotiontrack-results"),
                   help="output folder (default: %(default)s)")
    p.add_argument("--fps", type=_non_negative_float, default=d.fps,
                   help="frames analysed per second of video; 0 analyses every frame (default: %(default)s)")
    p.add_argument("--min-face", type=_positive_float, default=d.min_face,
                   help="smallest face to find, in source pixels; smaller is slower (default: %(default)s)")
    p.add_argument("--min-score", type=_probability, default=d.min_score,
                   help="drop detections with a lower MTCNN probability (default: %(default)s)")
    p.add_argument("--detect-every", type=_non_negative_float, default=d.detect_every_s, dest="detect_every_s",
                   metavar="SECONDS",
                   help="look for faces in the whole frame at least this often; in between, known faces are followed "
                        "(much cheaper). 0 looks at every analysed frame (default: %(default)s)")
    p.add_argument("--max-gap", type=_non_negative_float, default=d.max_gap_s, dest="max_gap_s",
                   help="seconds a face may be out of sight and keep its id (default: %(default)s)")
    p.add_argument("--crop", choices=CROPS, default=d.crop,
                   help="aligned: map each face's eyes, nose and mouth corners onto where the model's training faces "
                        "have them; box: the square of the detector's box (default: %(default)s)")
    p.add_argument("--margin", type=_non_negative_float, default=d.margin,
                   help="margin around each face box for box crops, as a fraction of its side (default: %(default)s)")
    p.add_argument("--smooth", type=_non_negative_float, default=d.smooth_s, dest="smooth_s", metavar="SECONDS",
                   help="smooth each face's probabilities over this many seconds; 0 disables (default: %(default)s)")
    p.add_argument("--no-video", action="store_false", dest="video",
                   help="skip the annotated video (annotated stills for image folders)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo inputs whose results are already complete (default: skip them)")
    p.add_argument("--model", type=Path, default=d.model, help="Keras model file (default: the shipped model)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device,
                   help="where MTCNN and the CNN run; auto uses CUDA when torch sees a GPU (default: %(default)s)")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="inputs analysed at the same time, sharing the loaded models; more than the number of CPU "
                        "cores only slows things down (default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="CPU threads for MTCNN and the CNN; ffmpeg decodes and encodes in its own processes beside "
                        "them (default: %(default)s)")


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _run_analyze(args: argparse.Namespace, console: Console) -> int:
    import gc
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    # Importing torch, torchvision, scipy, pandas and matplotlib creates millions of long-lived objects; the
    # garbage collector's full passes over them while they load cost ~1.2 s of every run (of ~7 s of imports).
    gc.disable()
    try:
        from emotiontrack.batch import analyze_input, check_output_dir, output_dirs, write_run_summary
        from emotiontrack.config import AnalyzeConfig, usable_cores

        started = time.monotonic()
        config = AnalyzeConfig(fps=args.fps, min_face=args.min_face, min_score=args.min_score,
                               detect_every_s=args.detect_every_s, max_gap_s=args.max_gap_s, margin=args.margin,
                               crop=args.crop, smooth_s=args.smooth_s, video=args.video, device=args.device, model=args.model)
        check_output_dir(args.output)  # before any model is loaded
        import torch

        from emotiontrack.pipeline import load_models

        torch.set_num_threads(args.threads)
        models = load_models(config)
    finally:
        # Those objects live as long as the process: keep the collector from walking them again and again.
        gc.freeze()
        gc.enable()
    dirs = output_dirs(args.paths, args.output)
    jobs = min(args.jobs, usable_cores(), len(args.paths))
    if jobs < args.jobs:
        log.info("--jobs %d: using %d (CPU cores and inputs bound it)", args.jobs, jobs)
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("inputs", total=len(args.paths))

        def run_one(path: Path):
            task = progress.add_task(_short(path), total=None)
            outcome = analyze_input(
                path, dirs[path], config, models,
                on_start=lambda info: progress.update(task, total=info.n_frames),
                on_frames=lambda n: progress.advance(task, n),
                overwrite=args.overwrite,
            )
            done = progress.tasks[task].completed or 1
            progress.update(task, total=done, completed=done)
            if not outcome.ok:
                progress.console.print(f"[red]failed:[/] {outcome.error}", highlight=False, soft_wrap=True)
            elif outcome.skipped:
                progress.console.print(f"skipped {path}: already done with this model and settings (--overwrite redoes it)",
                                       highlight=False, soft_wrap=True)
            progress.advance(overall)
            return outcome

        if jobs == 1:
            outcomes = [run_one(path) for path in args.paths]
        else:
            from concurrent.futures import ThreadPoolExecutor

            # Threads share the models; torch and ffmpeg release the GIL, so inputs overlap.
            with ThreadPoolExecutor(jobs) as pool:
                outcomes = list(pool.map(run_one, args.paths))
    write_run_summary(args.output, outcomes)
    _print_summary(console, outcomes, time.monotonic() - started)
    return 0 if all(o.ok for o in outcomes) else EXIT_FAILED


def _short(path: Path, width: int = 40) -> str:
    text = str(path)
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _print_summary(console: Console, outcomes: list, wall_s: float) -> None:
    done = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    skipped = sum(o.skipped for o in done)
    console.print(
        f"{len(done)} done{f' ({skipped} already complete)' if skipped else ''}, {len(failed)} failed; "
        f"{sum(o.faces for o in done)} faces; "
        f"{sum(o.video_s for o in done):.1f} s of video in {wall_s:.1f} s wall time", highlight=False, soft_wrap=True)
    for o in done:
        console.print(f"  ok      {o.path} -> {o.out_dir}", highlight=False, soft_wrap=True)
    for o in failed:
        console.print(f"  FAILED  {o.error}", highlight=False, soft_wrap=True)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from emotiontrack.config import default_model_path

    p = sub.add_parser("evaluate", help="score a model on a folder-per-emotion split",
                       description="Accuracy, macro-F1, per-class scores, confusion matrix, calibration (ECE), speed.")
    p.add_argument("data", type=Path, metavar="DATA_DIR", help="a split: <emotion>/ folders of images (a folder or zip)")
    p.add_argument("--model", type=Path, default=default_model_path(), help="model file (default: the shipped model)")
    p.add_argument("--split", metavar="NAME",
                   help="evaluate the folder of this name inside DATA_DIR (e.g. validation in the Kaggle zip)")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of tables")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write confusion.png and reliability.png into DIR")
    p.add_argument("--save", type=Path, metavar="FILE", help="also write the JSON report to FILE")
    p.add_argument("--tta", action="store_true",
                   help="average over test-time views (the image and four copies shifted by 2 px, each with its mirror "
                        "image): for reports; analyze classifies each face once")


def _run_evaluate(args: argparse.Namespace, console: Console) -> int:
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from emotiontrack.evaluate import evaluate, save_plots

    with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("images", total=None)
        report = evaluate(args.data, args.model, on_batch=lambda n: progress.advance(task, n),
                          on_loaded=lambda n: progress.update(task, total=n), split_name=args.split, tta=args.tta)
    if args.plots:
        report["plots"] = [str(p) for p in save_plots(report, args.plots)]
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return 0
    out = Console()
    out.print(f"{report['data']}: {report['n']} images, model {report['model']}")
    out.print(f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   ECE {report['ece']:.4f}   "
              f"NLL {report['nll']:.4f}   {report['images_per_s']:.0f} images/s")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotiontrack", description="Per-face emotion timelines from video.")
    parser.add_argument("--version", action="version", version=f"emotiontrack {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (debug level)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_analyze(sub)
    _add_train(sub)
    _add_evaluate(sub)
    return parser


RUNNERS = {"analyze": _run_analyze, "train": _run_train, "evaluate": _run_evaluate}


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that spin while waiting starve the ffmpeg processes working beside torch (10x slower
    # on 2 cores); must be set before torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    for noisy in ("PIL", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return RUNNERS[args.command](args, console)
    except EmotionTrackError as exc:
        console.print(f"[red]emotiontrack: error:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.print("emotiontrack: interrupted; unfinished outputs were removed", soft_wrap=True)
        return EXIT_INTERRUPTED
    except Terminated:
        console.print("emotiontrack: terminated; unfinished outputs were removed", soft_wrap=True)
        return EXIT_TERMINATED


def run() -> None:
    """The console script: `main`, then an exit that skips tearing down torch's ~1M objects (~0.4 s).
    Every output is closed by then; only the standard streams need flushing."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
