"""Runs batch query jobs one at a time on a thread of its own, woken when a job is submitted; stops after the
photo in hand. A job left running by a stop or a crash is taken up again at the next start."""

import logging
import threading

from app.batch.service import BatchQueries

log = logging.getLogger(__name__)
IDLE_POLL_S = 5.0  # a job submitted by another process is seen within this


class BatchRunner:
    def __init__(self, queries: BatchQueries) -> None:
        self.queries = queries
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="query-jobs", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.queries.run_next(self._stop)
            except Exception:  # a database hiccup: log it, try again later; never let the thread die
                log.exception("batch query job runner")
                worked = False
            if not worked:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
