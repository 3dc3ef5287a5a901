"""Ray for `analyze --engine ray`: started on this machine or joined, and the driver's signals while it runs.

Starting a local Ray on a busy machine can outlast Ray's own start-up wait (a fixed 30 s for the raylet to
register): the start is tried once more, and a second failure says how to start Ray once beside the runs.
An address where nothing listens fails in one line at once, instead of Ray's minutes of retries.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emotiontrack.config import RayOptions, usable_cores
from emotiontrack.errors import EmotionTrackError

log = logging.getLogger(__name__)

START_TRIES = 2  # a local Ray that failed to start is started once more (a busy machine)
BUSY_HINT = ("on a busy machine, start Ray once with `ray start --head --num-cpus N` and pass --ray-address auto "
             "(it then outlives the runs)")


@contextmanager
def ray_session(options: RayOptions) -> Iterator[None]:
    """Ray started on this machine's cores (no address) or joined ("auto", "ray://host:port"), shut down after.
    `ray.init` installs its own SIGTERM handler: the caller's handlers are put back."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise EmotionTrackError('--engine ray needs Ray: pip install "emotiontrack[ray]"') from None
    if options.address is not None:
        check_reachable(options.address)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _start_or_join(ray, options)
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


def _start_or_join(ray, options: RayOptions) -> None:
    """`ray.init`, a local start tried START_TRIES times; an EmotionTrackError in one line if it fails."""
    # The workers reach s3:// with the driver's S3 settings (endpoint, credentials), as a local run would.
    settings: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR,
                                "runtime_env": {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("AWS_")}}}
    if options.address is None:
        settings.update(address="local", num_cpus=usable_cores(), include_dashboard=False)
    else:
        settings.update(address=options.address)
    tries = START_TRIES if options.address is None else 1
    for attempt in range(1, tries + 1):
        try:
            ray.init(**settings)
            return
        except Exception as exc:  # ConnectionError, AuthenticationError, ValueError, a start-up timeout...
            ray.shutdown()
            reason = next(iter(str(exc).splitlines()), exc.__class__.__name__)
            if attempt < tries:
                log.warning("Ray did not start (%s); trying once more", reason)
                continue
            hint = f"; {BUSY_HINT}" if options.address is None else ""
            raise EmotionTrackError(f"cannot start or join Ray ({options.address or 'local'}): {reason}{hint}") from None


CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str) -> None:
    """Fail in one line when nothing listens at a "host:port" or "ray://host:port" address: `ray.init` would
    retry the connection for minutes instead. ("auto" is resolved by Ray from this machine's session files.)"""
    hostport = address.removeprefix("ray://")
    if address == "auto" or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        raise EmotionTrackError(f"--ray-address {address}: expected host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        raise EmotionTrackError(f"cannot join Ray at {address}: {reason.lower()}") from None



class DeferredSignals:
    """An exception raised by a signal handler while Ray's core waits becomes a SystemError with a traceback.
    While the driver talks to Ray, SIGINT and SIGTERM are only recorded; `check()`, between Ray calls, runs
    the handler the caller had installed (which raises KeyboardInterrupt or its own exception)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> DeferredSignals:
        self.pending: int | None = None
        self.saved: dict[int, Any] = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        for sig, handler in self.saved.items():
            if handler is not signal.SIG_IGN:  # an ignored signal stays ignored (cli/signals.py)
                signal.signal(sig, self._record)
        return self

    def _record(self, signum, frame) -> None:
        self.pending = signum

    def check(self) -> None:
        if self.pending is not None:
            signum, self.pending = self.pending, None
            handler = self.saved[signum]
            if callable(handler):
                handler(signum, None)
            raise KeyboardInterrupt()

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
