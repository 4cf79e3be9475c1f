"""Leases on claimed jobs: who a worker is, and a heartbeat that keeps its lease fresh while a job runs.

A worker claims a job by writing its name and a heartbeat on the job's row; a job whose heartbeat is older than
`stale_after_s` may be claimed by another worker (its first worker died). Every write a worker makes for the job
checks, with the job's row locked, that the job is still its own (a fence): a worker that was presumed dead and
comes back finds its job taken and stops, without writing.
"""

import logging
import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The job was taken over by another worker (or cancelled) since this one claimed it."""


def worker_name() -> str:
    """This process as a job's `worker`: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


class Heartbeat:
    """While the `with` block runs, calls `beat` every `every_s` seconds from a thread of its own. `beat`
    returns False when the lease is no longer this worker's; then `lost` is set and the beating stops. A beat
    that fails (the database is down for now) is tried again at the next one."""

    def __init__(self, beat: Callable[[], bool], every_s: float, name: str = "lease-heartbeat") -> None:
        self.beat = beat
        self.every_s = every_s
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                if not self.beat():
                    self.lost.set()
                    return
            except Exception as exc:  # the database is busy or down: the next beat may get through
                log.warning("lease heartbeat failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
