"""Runs batch query jobs one at a time on a thread of its own, woken when a job is submitted; stops after the
photo in hand and puts the job back in the queue.

Jobs are claimed as ingest jobs are (app/ingest/runner.py): `SELECT ... FOR UPDATE SKIP LOCKED`, a heartbeat
thread keeping the lease fresh, a job whose worker went silent taken over after `stale_after_s`, and each answer
written only while the job is still this worker's. So the server's runner and any number of `sourcelens worker`
processes can share one PostgreSQL database. The embedded server (SQLite, the only worker) puts jobs left
running by a crash back in the queue at start."""

import logging
import threading

from app.batch.service import BatchQueries
from app.core.lease import Heartbeat, worker_name

log = logging.getLogger(__name__)
IDLE_POLL_S = 5.0  # a job submitted by another process is seen within this


class BatchRunner:
    def __init__(self, queries: BatchQueries, *, poll_s: float = IDLE_POLL_S, stale_after_s: float = 300.0) -> None:
        self.queries = queries
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.worker = worker_name()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, requeue_interrupted: bool = False) -> None:
        """Start polling for jobs. `requeue_interrupted`: this is the only worker (embedded SQLite), so a job
        still marked running was cut off by a crash and resumes now."""
        if self._thread is None:
            if requeue_interrupted and (count := self.queries.requeue_running()):
                log.warning("%d batch query job(s) interrupted by a restart will resume", count)
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="query-jobs", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        """Ask the runner to stop after the photo in hand, without waiting (safe in a signal handler)."""
        self._stop.set()
        self._wake.set()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self.queries.claim(self.worker, self.stale_after_s)
            except Exception as exc:  # the database is down or busy: try again at the next poll
                log.warning("cannot claim batch query jobs now: %s", str(exc).splitlines()[0])
                job_id = None
            if job_id is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._run(job_id)

    def _run(self, job_id: str) -> None:
        lease = Heartbeat(lambda: self.queries.heartbeat(job_id, self.worker), self.stale_after_s / 4, "query-lease")
        try:
            with lease:
                state = self.queries.run(job_id, self.worker, self._stop)
            if state == "stopped":  # shutting down: the job goes back in the queue, for any worker to go on with
                self.queries.release(job_id, self.worker)
            elif state == "lost":
                log.warning("batch query job %s left to the worker that took it over", job_id)
        except Exception:  # a database hiccup: log it, try again later; never let the thread die
            log.exception("batch query job runner")
            self._stop.wait(self.poll_s)
