"""Runs ingest jobs on a background thread of the server process (the embedded default).

Several processes sharing a PostgreSQL database can each run one: claiming skips rows another worker has
locked, and a job whose worker stopped sending heartbeats is taken over after `stale_after_s`.
"""

import logging
import os
import socket
import threading

from app.ingest.jobs import JobStore
from app.ingest.pipeline import IngestPipeline

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, pipeline: IngestPipeline, jobs: JobStore, *, poll_s: float, stale_after_s: float) -> None:
        self.pipeline = pipeline
        self.jobs = jobs
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, requeue_interrupted: bool) -> None:
        """Start polling for jobs. `requeue_interrupted`: this is the only worker (embedded SQLite), so a job
        still marked running was cut off by a crash and resumes now."""
        if self._thread is not None and self._thread.is_alive():
            return
        if requeue_interrupted and (count := self.jobs.requeue_running()):
            log.warning("%d ingest job(s) interrupted by a restart will resume", count)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ingest-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current batch, then stop; the job stays claimed and resumes on the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            job_id = self.jobs.claim(self.worker, self.stale_after_s)
            if job_id is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._run(job_id)

    def _run(self, job_id: str) -> None:
        log.info("ingest job %s started by %s", job_id, self.worker)
        try:
            report = self.pipeline.run_job(job_id, stop=self._stop)
            log.info("ingest job %s %s: %s", job_id, report.state, report.summary())
        except Exception as exc:  # a broken job must not kill the worker; its report says why
            log.exception("ingest job %s failed", job_id)
            self.jobs.fail(job_id, f"{type(exc).__name__}: {exc}")
