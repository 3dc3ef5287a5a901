"""`main(argv)`: parse the command line, set up logging, run one command, map errors to exit statuses.

Each command (analyze.py, train.py, evaluate.py) parses its options, shows progress, calls the library;
an `EmotionTrackError` becomes a one-line message and a non-zero exit. Heavy modules are imported inside
the commands so that `--help` and option errors answer at once.
"""

from __future__ import annotations

import argparse
import logging

from rich.console import Console
from rich.logging import RichHandler

from emotiontrack import __version__
from emotiontrack.cli import analyze, evaluate, quantize, train
from emotiontrack.cli.signals import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated
from emotiontrack.errors import EmotionTrackError, UsageError

COMMANDS = {"analyze": analyze, "train": train, "evaluate": evaluate, "quantize": quantize}  # each module: add_parser(sub), run(args, console)

EXIT_FAILED, EXIT_USAGE = 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotiontrack", description="Per-face emotion timelines from video.")
    parser.add_argument("--version", action="version", version=f"emotiontrack {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (debug level)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0, 1 for failed inputs or errors, 2 usage, 130/143)."""
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    for noisy in ("PIL", "matplotlib", "h5py", "botocore", "boto3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Libraries' Python warnings (PIL's large images, matplotlib's missing glyphs) go to the log, shown with -v.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    try:
        return COMMANDS[args.command].run(args, console)
    except EmotionTrackError as exc:
        console.print(f"[red]emotiontrack: error:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        console.print("emotiontrack: interrupted; unfinished outputs were removed", soft_wrap=True)
        return EXIT_INTERRUPTED
    except Terminated:
        console.print("emotiontrack: terminated; unfinished outputs were removed", soft_wrap=True)
        return EXIT_TERMINATED
