"""Command line: `emotiontrack analyze | train | evaluate`.

Each command parses its options, sets up logging and progress display, calls the library and maps
`EmotionTrackError` to a one-line message and a non-zero exit. Heavy modules are imported inside the
commands so that `--help` and option errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from emotiontrack import __version__
from emotiontrack.errors import EmotionTrackError

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

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
    p = sub.add_parser("train", help="train the emotion CNN on a folder-per-emotion dataset",
                       description="Train the emotion CNN, checkpointing every epoch, then calibrate and save it.")
    p.add_argument("data", type=Path, metavar="DATA_DIR",
                   help="dataset: a folder or zip holding train/<emotion>/ and validation/<emotion>/ "
                        "(or only <emotion>/ folders when --val-dir is given)")
    p.add_argument("-o", "--output", type=Path, default=Path("models/emotiontrack.keras"),
                   help="model file to write (default: %(default)s); checkpoints go to OUTPUT.ckpt/")
    p.add_argument("--val-dir", type=Path, help="validation split (<emotion>/ folders), if not inside DATA_DIR")
    p.add_argument("--epochs", type=_positive_int, default=30, help="epochs to train (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="images per step (default: %(default)s)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="peak Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed for init, shuffling, augmentation (default: %(default)s)")
    p.add_argument("--limit", type=_positive_int, help="train on at most this many images (quick trials)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose checkpoint is in OUTPUT.ckpt/ (its settings are kept)")


def _run_train(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from emotiontrack.train import TrainConfig, load_checkpoint_config, train

    if args.resume:
        config = load_checkpoint_config(args.output)
    else:
        config = TrainConfig(data=args.data, output=args.output, val_dir=args.val_dir, epochs=args.epochs,
                             batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed, limit=args.limit)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("epoch", total=None, metrics="")

        def on_batch(step: int, steps: int, logs: dict) -> None:
            progress.update(task, completed=step, total=steps,
                            metrics=f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}")

        def on_epoch(epoch: int, logs: dict) -> None:
            progress.console.print(
                f"epoch {epoch + 1}/{config.epochs}: loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
                f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f}")
            progress.update(task, description=f"epoch {epoch + 2}", completed=0)

        summary = train(config, resume=args.resume, on_batch=on_batch, on_epoch=on_epoch)
    console.print(f"wrote {summary['model']} (temperature {summary['temperature']:.3f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotiontrack", description="Per-face emotion timelines from video.")
    parser.add_argument("--version", action="version", version=f"emotiontrack {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (debug level)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    return parser


RUNNERS = {"train": _run_train}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    for noisy in ("PIL", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return RUNNERS[args.command](args, console)
    except EmotionTrackError as exc:
        console.print(f"[red]emotiontrack: error:[/] {exc}", highlight=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.print("emotiontrack: interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
