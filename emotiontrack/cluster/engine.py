"""The driver of `analyze --engine ray`: start or join Ray, place the workers, feed them inputs.

One `AnalysisWorker` actor per worker slot; each has at most one input in flight, so the calls in flight are
bounded by the workers and the driver holds nothing but paths and outcomes. A worker that dies (OOM,
SIGKILL, a lost node) is restarted by Ray and its input retried (`max_restarts`, `max_task_retries`); its
staging folder is swept at the end. Ctrl-C or SIGTERM cancels the run through the control actor: the workers
stop at their next frame and remove their staging folders, then they are killed.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from emotiontrack.batch import Outcome
from emotiontrack.config import AnalyzeConfig, RayOptions, usable_cores
from emotiontrack.errors import EmotionTrackError
from emotiontrack.outputs.publish import sweep_leftovers

log = logging.getLogger(__name__)

RETRIES = 3  # restarts of a dead worker, and retries of the input it was analysing
POLL_S = 0.3  # how often the driver redraws progress
CANCEL_GRACE_S = 20.0  # how long cancelled workers get to stop and clean up before they are killed


class RunEvents(Protocol):
    """What the driver tells its caller (the command line draws progress bars from it)."""

    def progress(self, path: Path, done: int, total: int | None) -> None: ...

    def finished(self, path: Path, outcome: Outcome) -> None: ...


@contextmanager
def ray_session(options: RayOptions) -> Iterator[None]:
    """Ray started on this machine's cores (no address) or joined ("auto", "ray://host:port"), shut down after.
    `ray.init` installs its own SIGTERM handler: the caller's handlers are put back."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise EmotionTrackError('--engine ray needs Ray: pip install "emotiontrack[ray]"') from None
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if options.address is None:
            ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
        else:
            ray.init(address=options.address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        ray.shutdown()
        raise EmotionTrackError(f"cannot start or join Ray ({options.address or 'local'}): "
                                f"{next(iter(str(exc).splitlines()), exc)}") from None
    except BaseException:  # interrupted while starting: stop what was started
        ray.shutdown()
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    try:
        yield
    finally:
        ray.shutdown()


def worker_count(options: RayOptions, inputs: int, cluster_cpus: float) -> int:
    """As many workers as asked, or as the cluster's CPUs hold, and no more than there are inputs."""
    wanted = options.workers or max(1, int(cluster_cpus // options.cpus_per_worker))
    return max(1, min(wanted, inputs))


def gpu_share(options: RayOptions, workers: int, cluster_gpus: float) -> float:
    """GPUs per worker: as asked, or the cluster's GPUs shared evenly (at most one each)."""
    if options.gpus_per_worker is not None:
        return options.gpus_per_worker
    return min(1.0, cluster_gpus / workers) if cluster_gpus else 0.0


def analyze_on_ray(paths: Sequence[Path], dirs: dict[Path, Path], config: AnalyzeConfig, options: RayOptions,
                   events: RunEvents, overwrite: bool = False) -> list[Outcome]:
    """Analyse `paths` into `dirs` on the Ray session of the caller (`ray_session`); outcomes in input order."""
    import ray

    from emotiontrack.cluster.worker import AnalysisWorker, RunControl

    resources = ray.cluster_resources()
    count = worker_count(options, len(paths), resources.get("CPU", 1.0))
    gpus = gpu_share(options, count, resources.get("GPU", 0.0))
    # Named, so that workers find it by name: an actor handle among a restartable actor's arguments would be
    # kept in the object store for its restarts.
    control_name = f"emotiontrack-control-{uuid.uuid4().hex}"
    control: Any = ray.remote(num_cpus=0)(RunControl).options(name=control_name).remote()
    worker_class = ray.remote(AnalysisWorker).options(num_cpus=options.cpus_per_worker, num_gpus=gpus,
                                                      max_restarts=RETRIES, max_task_retries=RETRIES)
    workers = [worker_class.remote(config, control_name) for _ in range(count)]
    log.debug("%d Ray workers, %.2f CPUs and %.2f GPUs each", count, options.cpus_per_worker, gpus)
    try:
        _wait_until_ready(ray, workers)
        return _feed(ray, paths, dirs, workers, control, events, overwrite)
    except BaseException:  # Ctrl-C, SIGTERM: workers stop at their next frame and remove their staging folders
        control.cancel.remote()
        raise
    finally:
        _stop(ray, workers)
        for leftover in sweep_leftovers(next(iter(dirs.values())).parent) if dirs else []:
            log.debug("removed %s, left by a lost worker", leftover)


def _wait_until_ready(ray, workers: list) -> None:
    try:
        ray.get([w.ready.remote() for w in workers])
    except ray.exceptions.RayActorError as exc:
        raise EmotionTrackError(f"the Ray workers could not start: {_cause(exc)}") from None


def _feed(ray, paths: Sequence[Path], dirs: dict[Path, Path], workers: list, control, events: RunEvents,
          overwrite: bool) -> list[Outcome]:
    """Each free worker gets the next input; progress is polled while they work."""
    keys = {str(i): path for i, path in enumerate(paths)}
    todo, free = deque(keys), list(workers)
    in_flight: dict = {}  # call -> (key, worker)
    outcomes: dict[str, Outcome] = {}
    while todo or in_flight:
        while todo and free:
            key, worker = todo.popleft(), free.pop()
            in_flight[worker.analyze.remote(key, keys[key], dirs[keys[key]], overwrite)] = (key, worker)
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
        totals, done = ray.get(control.snapshot.remote())
        for key in totals:
            if key not in outcomes:
                events.progress(keys[key], done.get(key, 0), totals[key])
        for call in ready:
            key, worker = in_flight.pop(call)
            outcome, alive = _outcome(ray, call, keys[key], dirs[keys[key]])
            outcomes[key] = outcome
            events.finished(keys[key], outcome)
            if alive:
                free.append(worker)
        if todo and not free and not in_flight:  # every worker is gone
            for key in todo:
                outcomes[key] = Outcome(keys[key], dirs[keys[key]], error=f"{keys[key]}: no Ray worker left to analyse it")
                events.finished(keys[key], outcomes[key])
            todo.clear()
    return [outcomes[key] for key in keys]


def _outcome(ray, call, path: Path, out_dir: Path) -> tuple[Outcome, bool]:
    """The worker's outcome, or the failure that ended the call; and whether the worker is still usable."""
    try:
        outcome = ray.get(call)
    except ray.exceptions.RayActorError as exc:
        return Outcome(path, out_dir, error=f"{path}: the Ray worker analysing it was lost {RETRIES + 1} times "
                                            f"({_cause(exc)})"), False
    except ray.exceptions.RayTaskError as exc:
        return Outcome(path, out_dir, error=f"{path}: unexpected error on a Ray worker ({_cause(exc)})"), True
    if outcome is None:
        return Outcome(path, out_dir, error=f"{path}: cancelled"), True
    return outcome, True


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
