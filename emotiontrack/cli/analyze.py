"""`emotiontrack analyze`: many inputs into one output folder, with progress per input and a closing summary."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import tempfile
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from rich.console import Console

from emotiontrack.cli.bars import InputBars, print_summary
from emotiontrack.cli.live import add_live_options, check_live_usage, run_live
from emotiontrack.cli.options import non_negative_float, positive_float, positive_int, probability
from emotiontrack.cli.progress import progress_bars
from emotiontrack.cli.signals import clean_up_on_signals
from emotiontrack.config import CROPS, PRECISIONS, AnalyzeConfig, RayOptions
from emotiontrack.errors import Cancelled, UsageError

log = logging.getLogger("emotiontrack")
EXIT_FAILED = 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    from emotiontrack.config import AnalyzeConfig

    d = AnalyzeConfig()
    p = sub.add_parser("analyze", help="analyse videos and image folders into per-face emotion timelines",
                       description="Detect, track and classify every face; write <out>/<input>/timeline.parquet per input.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video files (any format ffmpeg reads), image folders, s3://bucket/key videos, or one live "
                        "source: udp://, rtp://, rtsp://, rtmp://, srt://, http(s):// (HLS) or /dev/video*")
    p.add_argument("-o", "--output", default="emotiontrack-results",
                   help="output folder, or an s3://bucket/prefix (staged on local disk, then uploaded; "
                        "endpoint and credentials as boto3 takes them) (default: %(default)s)")
    _analysis_options(p.add_argument_group("analysis (recorded with each result: a change redoes it)"), d)
    _output_options(p.add_argument_group("outputs"), d)
    _machine_options(p.add_argument_group("models and machine"), d)
    _cluster_options(p, d)
    add_live_options(p)


def _analysis_options(p: argparse._ActionsContainer, d: AnalyzeConfig) -> None:
    """Sampling, detection, tracking and cropping."""
    p.add_argument("--fps", type=non_negative_float, default=d.sample_fps, dest="sample_fps",
                   help="frames analysed per second of video; 0 analyses every frame (default: %(default)s)")
    p.add_argument("--min-face", type=positive_float, default=d.min_face,
                   help="smallest face to find, in source pixels; smaller is slower (default: %(default)s)")
    p.add_argument("--min-score", type=probability, default=d.min_score,
                   help="drop detections with a lower MTCNN probability (default: %(default)s)")
    p.add_argument("--detect-every", type=non_negative_float, default=d.detect_every_s, dest="detect_every_s",
                   metavar="SECONDS",
                   help="look for faces in the whole frame at least this often; in between, known faces are followed "
                        "(much cheaper). 0 looks at every analysed frame (default: %(default)s)")
    p.add_argument("--max-gap", type=non_negative_float, default=d.max_gap_s, dest="max_gap_s",
                   help="seconds a face may be out of sight and keep its id (default: %(default)s)")
    p.add_argument("--crop", choices=CROPS, default=d.crop,
                   help="aligned: map each face's eyes, nose and mouth corners onto where the model's training faces "
                        "have them; box: the square of the detector's box (default: %(default)s)")
    p.add_argument("--margin", type=non_negative_float, default=d.margin,
                   help="margin around each face box for box crops, as a fraction of its side (default: %(default)s)")


def _output_options(p: argparse._ActionsContainer, d: AnalyzeConfig) -> None:
    """Smoothing, the annotated video, re-runs."""
    p.add_argument("--smooth", type=non_negative_float, default=d.smooth_s, dest="smooth_s", metavar="SECONDS",
                   help="smooth each face's probabilities over this many seconds; 0 disables (default: %(default)s)")
    p.add_argument("--no-video", action="store_false", dest="video",
                   help="skip the annotated video (annotated stills for image folders)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo inputs whose results are already complete (default: skip them)")


def _machine_options(p: argparse._ActionsContainer, d: AnalyzeConfig) -> None:
    """The model file, device, jobs and threads."""
    p.add_argument("--model", type=Path, default=d.model, help="Keras model file (default: the shipped model)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device,
                   help="where MTCNN and the CNN run; auto uses CUDA when torch sees a GPU (default: %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="the CNN's arithmetic: auto is bf16 on CPUs with native bf16 (AVX512-BF16, AMX), int8 on other "
                        "x86 CPUs (AVX2; about 2x faster than fp32, accuracy in the model card), fp32 on a GPU "
                        "(default: %(default)s)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="inputs analysed at the same time, sharing the loaded models; more than the number of CPU "
                        "cores only slows things down (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=d.threads,
                   help="CPU threads for MTCNN and the CNN; ffmpeg decodes and encodes in its own processes beside "
                        "them (default: %(default)s)")


def _cluster_options(p: argparse.ArgumentParser, d: AnalyzeConfig) -> None:
    """--engine ray and its settings."""
    r = RayOptions()
    cluster = p.add_argument_group("on a Ray cluster (pip install \"emotiontrack[ray]\")")
    cluster.add_argument("--engine", choices=("local", "ray"), default="local",
                         help="local: this process (--jobs); ray: Ray actors, each with the models loaded once, "
                              "analysing whole inputs (default: %(default)s)")
    cluster.add_argument("--ray-address", default=r.address, metavar="ADDRESS",
                         help="Ray cluster to join: auto (the one `ray start` made here) or ray://host:port; "
                              "none starts a local Ray on this machine's cores (default: none)")
    cluster.add_argument("--workers", type=positive_int, default=r.workers,
                         help="Ray workers (default: as many as the cluster's CPUs hold at --cpus-per-worker, "
                              "at most one per input unless --segment-s)")
    cluster.add_argument("--cpus-per-worker", type=positive_float, default=r.cpus_per_worker,
                         help="CPUs Ray reserves per worker (default: %(default)s)")
    cluster.add_argument("--gpus-per-worker", type=non_negative_float, default=r.gpus_per_worker,
                         help="GPUs per worker, fractions allowed: 0.25 puts four workers on a GPU (default: the "
                              "cluster's GPUs shared among the workers, 0 without GPUs)")
    cluster.add_argument("--segment-s", type=non_negative_float, default=d.segment_s, metavar="SECONDS",
                         help="split each video into segments of this many seconds, analysed in parallel by the "
                              "workers and stitched into one timeline (needs --engine ray and --no-video; "
                              "0: one pass per video; default: %(default)s)")


def run(args: argparse.Namespace, console: Console) -> int:
    """Analyse every input; exit status 1 if any failed."""
    from emotiontrack.runtime import loading

    started = time.monotonic()
    if args.segment_s and (args.engine != "ray" or args.video):
        raise UsageError("--segment-s needs --engine ray and --no-video (segments are not drawn yet)")
    live = check_live_usage(args)
    if args.engine == "ray" and args.ray_address:  # before anything is written (ray_session checks it too)
        from emotiontrack.cluster.session import check_reachable

        check_reachable(args.ray_address)
    config = AnalyzeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(AnalyzeConfig)})
    if live:
        _check_output(args.output, None)
        return run_live(args, config, console)
    with loading():  # imports and models without garbage collection, frozen after (runtime.py): the CLI's alone
        from emotiontrack.batch import write_run_summary
        from emotiontrack.pipeline import load_models
        from emotiontrack.s3 import S3Prefix, is_s3

        remote = S3Prefix.parse(args.output) if is_s3(args.output) else None
        _check_output(args.output, remote)  # before any model is loaded
        models = load_models(config) if args.engine == "local" else None  # Ray workers load their own
    clean_up_on_signals()  # outputs are written from here on: Ctrl-C and SIGTERM now unwind through `finally`
    # Local scratch, made only now (a signal while starting exits at once, with nothing to remove):
    # s3:// inputs are downloaded under inputs/, results for s3:// staged under results/.
    scratch = Path(tempfile.mkdtemp(prefix="emotiontrack-"))
    try:
        out = scratch / "results" if remote else Path(args.output)
        args.paths, sources = _inputs(_once_each(args.paths), scratch / "inputs")
        outcomes = _analyze_all(args, config, models, out, remote, sources, console)
        write_run_summary(out, outcomes, remote)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_summary(console, outcomes, time.monotonic() - started, remote)
    return 0 if all(o.ok for o in outcomes) else EXIT_FAILED


def _check_output(output: str, remote) -> None:
    """The output can be written (a bucket, or a folder: swept of what an interrupted run left there)."""
    from emotiontrack.files import check_output_dir
    from emotiontrack.outputs.publish import sweep_leftovers

    if remote is not None:
        from emotiontrack.s3 import check_writable

        check_writable(remote)
        return
    check_output_dir(Path(output))
    for leftover in sweep_leftovers(Path(output)):
        log.info("removed %s, left by an interrupted run", leftover)


def _analyze_all(args: argparse.Namespace, config, models, out: Path, remote, sources: dict[Path, str],
                 console: Console) -> list:
    """Every input, here or on Ray, with a progress bar each; their outcomes in input order."""
    from emotiontrack.outputs.publish import output_dirs

    if remote is not None:
        out.mkdir(parents=True, exist_ok=True)
    dirs = output_dirs(args.paths, out, sources)
    # Ray is started or joined before the bars are drawn: a bad address fails in one line, nothing else.
    with _engine_session(args), progress_bars(console) as progress:
        bars = InputBars(progress, len(args.paths), sources)
        if models is not None:
            return _analyze_here(args, config, models, dirs, bars, remote, sources)
        return _analyze_on_ray(args, config, dirs, bars, remote, sources)


def _inputs(texts: list[str], downloads: Path) -> tuple[list[Path], dict[Path, str]]:
    """Each input as the local path it is analysed from; s3:// ones map to where they will be downloaded."""
    from emotiontrack.s3 import is_s3, split_uri

    paths, sources = [], {}
    for text in texts:
        if is_s3(text):
            bucket, key = split_uri(text)
            path = downloads / bucket / key
            sources[path] = text
        else:
            path = Path(text)
        paths.append(path)
    return paths, sources


def _analyze_here(args: argparse.Namespace, config, models, dirs: dict, bars: InputBars, remote, sources: dict) -> list:
    """The local engine: the inputs one after another, or on --jobs threads sharing the models."""
    from emotiontrack.batch import analyze_input
    from emotiontrack.config import usable_cores

    jobs = min(args.jobs, usable_cores(), len(args.paths))
    if jobs < args.jobs:
        log.info("--jobs %d: using %d (CPU cores and inputs bound it)", args.jobs, jobs)
    cancel = threading.Event()  # set when Ctrl-C or SIGTERM reaches the main thread

    def on_frames(path: Path, n: int) -> None:
        if cancel.is_set():  # stop this input at its next frame; its staging folder is removed
            raise Cancelled()
        bars.advance(path, n)

    def run_one(path: Path):
        outcome = analyze_input(path, dirs[path], config, models, overwrite=args.overwrite,
                                remote=remote.child(dirs[path].name) if remote else None, source=sources.get(path),
                                on_start=lambda info: bars.started(path, info.n_frames),
                                on_frames=lambda n: on_frames(path, n))
        bars.finished(path, outcome)
        return outcome

    if jobs == 1:  # in this thread, where Ctrl-C and SIGTERM arrive
        return [run_one(path) for path in args.paths]
    return _in_threads(run_one, args.paths, jobs, cancel)


def _ray_options(args: argparse.Namespace) -> RayOptions:
    return RayOptions(args.ray_address, args.cpus_per_worker, args.gpus_per_worker, args.workers)


def _engine_session(args: argparse.Namespace) -> AbstractContextManager:
    """The Ray session for --engine ray (started or joined, shut down after); nothing for the local engine."""
    if args.engine != "ray":
        return nullcontext()
    from emotiontrack.cluster.session import ray_session

    return ray_session(_ray_options(args))


def _analyze_on_ray(args: argparse.Namespace, config, dirs: dict, bars: InputBars, remote, sources: dict) -> list:
    from emotiontrack.cluster.engine import analyze_on_ray

    if args.jobs > 1:
        log.info("--jobs applies to the local engine: Ray runs --workers")
    return analyze_on_ray(args.paths, dirs, config, _ray_options(args), bars, overwrite=args.overwrite, remote=remote,
                          sources=sources)


def _in_threads(run_one, paths: list[Path], jobs: int, cancel: threading.Event) -> list:
    """`run_one` over the inputs on `jobs` threads sharing the models (torch and ffmpeg release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_one, path) for path in paths]
        try:
            return [future.result() for future in futures]
        except BaseException:  # Ctrl-C or SIGTERM: the inputs in flight stop at their next frame
            cancel.set()
            for future in futures:
                future.cancel()
            raise


def _once_each(paths: list[str]) -> list[str]:
    """The inputs in the order given, each once (the same file named twice is analysed once)."""
    from emotiontrack.s3 import is_s3

    first: dict[str, str] = {}
    for path in paths:
        first.setdefault(path if is_s3(path) else str(Path(path).absolute()), path)
    unique = list(first.values())
    if len(unique) < len(paths):
        log.info("%d input(s) given more than once: each is analysed once", len(paths) - len(unique))
    return unique
