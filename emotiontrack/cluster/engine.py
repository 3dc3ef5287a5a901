"""The driver of `analyze --engine ray`: start or join Ray, place the workers, feed them inputs.

One `AnalysisWorker` actor per worker slot; each has at most one job in flight (an input, or with
--segment-s one time segment of a video), so the calls in flight are bounded by the workers. Segments come
back as faces, which the driver stitches (segments.py) and publishes; whole inputs are published by their
worker. A worker that dies (OOM, SIGKILL, a lost node) is restarted by Ray and its job retried
(`max_restarts`, `max_task_retries`); its staging folder is swept at the end. Ctrl-C or SIGTERM cancels the
run through the control actor: the workers stop at their next frame and remove their staging folders, then
they are killed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from emotiontrack.batch import Outcome, already_done, publish_result
from emotiontrack.cluster.segments import Segment, overlap_s, plan_segments, stitch
from emotiontrack.cluster.session import DeferredSignals
from emotiontrack.config import AnalyzeConfig, RayOptions
from emotiontrack.errors import EmotionTrackError
from emotiontrack.media.probe import probe
from emotiontrack.outputs.publish import source_identity, sweep_leftovers
from emotiontrack.s3 import S3Prefix
from emotiontrack.types import VideoResult

log = logging.getLogger(__name__)

RETRIES = 3  # restarts of a dead worker, and retries of the input it was analysing
POLL_S = 0.3  # how often the driver redraws progress
CANCEL_GRACE_S = 20.0  # how long cancelled workers get to stop and clean up before they are killed


class RunEvents(Protocol):
    """What the driver tells its caller (the command line draws progress bars from it)."""

    def progress(self, path: Path, done: int, total: int | None) -> None: ...

    def finished(self, path: Path, outcome: Outcome) -> None: ...


def worker_count(options: RayOptions, jobs: int | None, cluster_cpus: float) -> int:
    """As many workers as asked, or as the cluster's CPUs hold, and no more than there are jobs (inputs;
    None: not known yet, as with segments)."""
    wanted = options.workers or max(1, int(cluster_cpus // options.cpus_per_worker))
    return max(1, min(wanted, jobs or wanted))


def gpu_share(options: RayOptions, workers: int, cluster_gpus: float) -> float:
    """GPUs per worker: as asked, or the cluster's GPUs shared evenly (at most one each)."""
    if options.gpus_per_worker is not None:
        return options.gpus_per_worker
    return min(1.0, cluster_gpus / workers) if cluster_gpus else 0.0


def analyze_on_ray(paths: Sequence[Path], dirs: dict[Path, Path], config: AnalyzeConfig, options: RayOptions,
                   events: RunEvents, overwrite: bool = False, remote: S3Prefix | None = None,
                   sources: Mapping[Path, str] | None = None) -> list[Outcome]:
    """Analyse `paths` into `dirs` (and from there to `remote`'s subfolders of the same names, if given) on
    the Ray session of the caller (`ray_session`); outcomes in input order. `sources` maps the paths of
    s3:// inputs to their URIs: each worker downloads its input there."""
    import ray

    from emotiontrack.cluster.worker import AnalysisWorker, RunControl

    resources = ray.cluster_resources()
    count = worker_count(options, None if config.segment_s else len(paths), resources.get("CPU", 1.0))
    gpus = gpu_share(options, count, resources.get("GPU", 0.0))
    # Named, so that workers find it by name: an actor handle among a restartable actor's arguments would be
    # kept in the object store for its restarts.
    control_name = f"emotiontrack-control-{uuid.uuid4().hex}"
    control: Any = ray.remote(num_cpus=0)(RunControl).options(name=control_name).remote()
    worker_class = ray.remote(AnalysisWorker).options(num_cpus=options.cpus_per_worker, num_gpus=gpus,
                                                      max_restarts=RETRIES, max_task_retries=RETRIES)
    workers = [worker_class.remote(config, control_name) for _ in range(count)]
    log.debug("%d Ray workers, %.2f CPUs and %.2f GPUs each", count, options.cpus_per_worker, gpus)
    with DeferredSignals() as signals:
        try:
            model_sha256 = _wait_until_ready(ray, workers, signals)
            feeder = _Feeder(ray, paths, dirs, config, model_sha256, events, overwrite, remote, sources or {})
            return feeder.run(workers, control, signals)
        except BaseException:  # Ctrl-C, SIGTERM: workers stop at their next frame and remove their staging folders
            control.cancel.remote()
            raise
        finally:
            _stop(ray, workers)
            for leftover in sweep_leftovers(next(iter(dirs.values())).parent) if dirs else []:
                log.debug("removed %s, left by a lost worker", leftover)


def _wait_until_ready(ray, workers: list, signals: DeferredSignals) -> str:
    """The model's SHA-256, once every worker has loaded the models."""
    calls = [w.ready.remote() for w in workers]
    while len(ray.wait(calls, num_returns=len(calls), timeout=POLL_S)[0]) < len(calls):
        signals.check()
    signals.check()
    try:
        return ray.get(calls)[0]
    except ray.exceptions.RayActorError as exc:
        raise EmotionTrackError(f"the Ray workers could not start: {_cause(exc)}") from None


@dataclass(frozen=True)
class _Job:
    """One call: a whole input, or one segment of a video."""

    key: str  # the control actor's progress key: "<input>" or "<input>.<segment>"
    path: Path
    segment: Segment | None = None


class _Feeder:
    """Each free worker gets the next job; progress is polled while they work; segments are stitched."""

    def __init__(self, ray, paths: Sequence[Path], dirs: dict[Path, Path], config: AnalyzeConfig,
                 model_sha256: str, events: RunEvents, overwrite: bool, remote: S3Prefix | None,
                 sources: Mapping[Path, str]):
        self.ray, self.dirs, self.config, self.model_sha256 = ray, dirs, config, model_sha256
        self.events, self.overwrite, self.remote, self.sources = events, overwrite, remote, sources
        self.paths = list(paths)
        self.outcomes: dict[Path, Outcome] = {}
        self.segments: dict[Path, list[Segment]] = {}
        self.parts: dict[Path, dict[Segment, VideoResult]] = {}
        self.started: dict[Path, float] = {}
        self.jobs: deque[_Job] = deque(job for index, path in enumerate(self.paths) for job in self._jobs(str(index), path))

    def _jobs(self, key: str, path: Path) -> list[_Job]:
        """A video in segments (--segment-s) unless it is already done, fails to probe, or is short."""
        self.started[path] = time.monotonic()
        if not self.config.segment_s or path in self.sources:  # an s3:// input is downloaded by its worker
            return [_Job(key, path)]
        out_dir = self.dirs[path]
        try:
            identity = source_identity(path)
            if not self.overwrite and already_done(identity, out_dir, self.config, self.model_sha256, self._remote(path)):
                return [_Job(key, path)]  # its worker skips it, as the local engine would
            info = probe(path)
        except OSError:
            return [_Job(key, path)]  # its worker reports why it cannot be read
        except EmotionTrackError as exc:
            self._finished(path, Outcome(path, out_dir, error=str(exc)))
            return []
        segments = [] if info.is_stills else plan_segments(info.duration_s, self.config.segment_s, overlap_s(self.config))
        if len(segments) < 2:
            return [_Job(key, path)]
        self.segments[path], self.parts[path] = segments, {}
        return [_Job(f"{key}.{k}", path, segment) for k, segment in enumerate(segments)]

    def run(self, workers: list, control, signals: DeferredSignals) -> list[Outcome]:
        free = list(workers)
        in_flight: dict = {}  # call -> (job, worker)
        while self.jobs or in_flight:
            while self.jobs and free:
                job = self.jobs.popleft()
                if job.path not in self.outcomes:  # else another segment of it failed
                    worker = free.pop()
                    in_flight[self._call(worker, job)] = (job, worker)
            ready, _ = self.ray.wait(list(in_flight), num_returns=1, timeout=POLL_S) if in_flight else ([], [])
            self._progress(control)
            signals.check()
            for call in ready:
                job, worker = in_flight.pop(call)
                if self._collect(call, job):
                    free.append(worker)
            if self.jobs and not free and not in_flight:  # every worker is gone
                for job in self.jobs:
                    self._fail(job.path, f"{job.path}: no Ray worker left to analyse it")
                self.jobs.clear()
        return [self.outcomes[path] for path in self.paths]

    def _call(self, worker, job: _Job):
        if job.segment is None:
            return worker.analyze.remote(job.key, job.path, self.dirs[job.path], self.overwrite, self._remote(job.path),
                                         self.sources.get(job.path))
        return worker.analyze_segment.remote(job.key, job.path, job.segment.window)

    def _progress(self, control) -> None:
        """Frames done per input: the sum over its segments."""
        totals, done = self.ray.get(control.snapshot.remote())
        per_input: dict[str, tuple[int, int | None]] = {}
        for key, total in totals.items():
            frames, so_far = per_input.get(key.split(".")[0], (0, 0))
            per_input[key.split(".")[0]] = (frames + done.get(key, 0),
                                            None if so_far is None or total is None else so_far + total)
        for key, (frames, all_frames) in per_input.items():
            path = self.paths[int(key)]
            if path not in self.outcomes:
                self.events.progress(path, frames, all_frames)

    def _collect(self, call, job: _Job) -> bool:
        """Take a finished call's result; False if its worker is gone for good."""
        try:
            value = self.ray.get(call)
        except self.ray.exceptions.RayActorError as exc:
            self._fail(job.path, f"{job.path}: the Ray worker analysing it was lost {RETRIES + 1} times ({_cause(exc)})")
            return False
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            self._fail(job.path, str(cause) if isinstance(cause, EmotionTrackError) else
                       f"{job.path}: unexpected error on a Ray worker ({_cause(exc)})")
            return True
        if value is None:
            self._fail(job.path, f"{job.path}: cancelled")
        elif job.segment is None:
            self._finished(job.path, value)
        elif job.path not in self.outcomes:
            self.parts[job.path][job.segment] = value
            if len(self.parts[job.path]) == len(self.segments[job.path]):
                self._finished(job.path, self._stitched(job.path))
        return True

    def _stitched(self, path: Path) -> Outcome:
        """The segments' faces stitched into one result and published (`publish_result` guards both)."""
        return publish_result(path, self.dirs[path], lambda: self._stitch(path), self.config, self.model_sha256,
                              self.started[path], self._remote(path))

    def _stitch(self, path: Path) -> VideoResult:
        segments = self.segments[path]
        results = [self.parts[path][segment] for segment in segments]
        info = results[0].info
        overlap_frames = sum(round((s.own_start_s - s.start_s) * float(info.fps)) for s in segments)
        result = VideoResult(info, stitch(segments, [r.faces for r in results]),
                             frames_decoded=sum(r.frames_decoded for r in results) - overlap_frames,
                             decode_errors=sum(r.decode_errors for r in results))
        for part in results:
            for stage, seconds in part.times.items():
                result.times[stage] = result.times.get(stage, 0.0) + seconds
        return result

    def _remote(self, path: Path) -> S3Prefix | None:
        return self.remote.child(self.dirs[path].name) if self.remote else None

    def _fail(self, path: Path, error: str) -> None:
        if path not in self.outcomes:
            self._finished(path, Outcome(path, self.dirs[path], error=error))

    def _finished(self, path: Path, outcome: Outcome) -> None:
        self.outcomes[path] = outcome
        self.events.finished(path, outcome)


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return lines[-1] if lines else cause.__class__.__name__


def _stop(ray, workers: list) -> None:
    """Give cancelled workers time to clean up, then end them (and with them their ffmpeg processes)."""
    calls = [w.ready.remote() for w in workers]  # queued behind the input each is analysing
    ray.wait(calls, num_returns=len(calls), timeout=CANCEL_GRACE_S)
    for worker in workers:
        ray.kill(worker)
