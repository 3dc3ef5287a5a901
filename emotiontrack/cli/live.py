"""`emotiontrack analyze URL`: a live source (a stream or a capture device) captured as it happens.

ffmpeg starts listening before the models load, so nothing sent meanwhile is lost. The first Ctrl-C (or
SIGTERM) stops the capture and publishes what was seen, exit 0; a second one aborts (130 or 143) and
leaves nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from emotiontrack.cli.bars import InputBars, print_summary
from emotiontrack.cli.options import positive_float
from emotiontrack.cli.progress import progress_bars
from emotiontrack.cli.signals import clean_up_on_signals, handle
from emotiontrack.config import AnalyzeConfig, LiveOptions
from emotiontrack.errors import UsageError
from emotiontrack.media.sources import is_live, live_name

EXIT_FAILED = 1


def add_live_options(p: argparse.ArgumentParser) -> None:
    d = LiveOptions()
    live = p.add_argument_group("live sources (udp://, rtp://, rtsp://, rtmp://, srt://, http(s):// and /dev/video*)")
    live.add_argument("--name", help="output folder of the capture under --output (default: from the address, "
                                     "e.g. udp-127.0.0.1-23000)")
    live.add_argument("--flush-s", type=positive_float, default=d.flush_s, metavar="SECONDS",
                      help="write the rows seen so far as a Parquet part under <output>/<name>/live/ at least this "
                           "often (default: %(default)s)")
    live.add_argument("--stall-s", type=positive_float, default=d.stall_s, metavar="SECONDS",
                      help="end the capture (or reconnect) when no video comes for this long (default: %(default)s)")
    live.add_argument("--wait-s", type=positive_float, default=d.wait_s, metavar="SECONDS",
                      help="how long to wait for the first video (default: %(default)s)")
    live.add_argument("--duration", type=positive_float, default=d.duration_s, dest="duration_s", metavar="SECONDS",
                      help="end the capture after this many seconds of video (default: until the source ends, "
                           "stalls or Ctrl-C)")
    live.add_argument("--reconnect", action="store_true",
                      help="open a dropped or stalled network source again (back-off 1 to 30 s); the timeline "
                           "goes on. Ends with --duration or Ctrl-C")


def check_live_usage(args: argparse.Namespace) -> bool:
    """Whether the run captures a live source; UsageError where live and other inputs or options do not mix."""
    live = [p for p in args.paths if is_live(p)]
    if not live:
        if args.name:
            raise UsageError("--name names a live capture's folder; file inputs are named after themselves")
        return False
    if len(args.paths) > 1:
        raise UsageError(f"a live source is captured alone (the others would wait until it ends): run one "
                         f"command per stream, and files in another ({live[0]} given with {len(args.paths) - 1} more)")
    if args.engine != "local":
        raise UsageError("a live source is captured here: --engine ray takes files")
    if args.output.startswith("s3://"):
        raise UsageError("a live capture writes to a local folder: -o s3://... takes files")
    return True


def run_live(args: argparse.Namespace, config: AnalyzeConfig, console: Console) -> int:
    """Capture the one live input into <output>/<name>; exit status 1 if it failed."""
    from emotiontrack.media.live import LiveReader
    from emotiontrack.runtime import loading

    started = time.monotonic()
    url, out = args.paths[0], Path(args.output)
    out_dir = out / (args.name or live_name(url))
    make_room(out_dir, args.overwrite)
    options = LiveOptions(args.flush_s, args.stall_s, args.wait_s, args.duration_s, args.reconnect)
    clean_up_on_signals()  # ffmpeg runs from here on: a signal unwinds, and stops it
    with LiveReader(url, out_dir.name, options, config.sample_fps, keep_all=config.video) as reader:
        with loading():
            from emotiontrack.batch import write_run_summary
            from emotiontrack.live import analyze_live
            from emotiontrack.pipeline import load_models

            models = load_models(config)
        stop_on_first_signal(reader.stop)
        with progress_bars(console) as progress:
            bars = InputBars(progress, 1, {out_dir: url})
            console.print(f"capturing {url} into {out_dir} (Ctrl-C stops and publishes)", highlight=False)
            outcome = analyze_live(reader, out_dir, config, models, on_start=lambda info: bars.started(out_dir, None),
                                   on_frames=lambda n: bars.advance(out_dir, n))
            bars.finished(out_dir, outcome)
        write_run_summary(out, [outcome])
    print_summary(console, [outcome], time.monotonic() - started, None)
    return 0 if outcome.ok else EXIT_FAILED


def make_room(out_dir: Path, overwrite: bool) -> None:
    """A capture's folder must be new, unless --overwrite (the older one is removed now: the capture's parts
    are written there from its first seconds)."""
    if not out_dir.exists():
        return
    if not overwrite:
        raise UsageError(f"{out_dir} exists: give the capture another --name, or --overwrite to replace it")
    aside = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.monotonic_ns()}")
    os.replace(out_dir, aside)
    shutil.rmtree(aside, ignore_errors=True)


def stop_on_first_signal(stop: Callable[[], None]) -> None:
    """The first Ctrl-C or SIGTERM calls `stop` (the capture ends and is published); the next one aborts."""

    def first(signum, frame) -> None:
        clean_up_on_signals()
        os.write(2, b"emotiontrack: stopping the capture and publishing what was seen (again to abort)\n")
        stop()

    handle(signal.SIGINT, first)
    handle(signal.SIGTERM, first)
