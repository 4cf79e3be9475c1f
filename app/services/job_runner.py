"""Runs ingest jobs on a background thread of the server process (the embedded default).

Several processes sharing a PostgreSQL database can each run one: claiming skips rows another worker has
locked, and a job whose worker stopped sending heartbeats is taken over after `stale_after_s`.
"""

import logging
import os
import socket
import threading

from app.models import IngestJob, utcnow
from app.runtime import Runtime
from app.services import jobs
from app.services.ingest import run_job

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, runtime: Runtime, poll_s: float = 2.0, stale_after_s: float = 300.0) -> None:
        self.runtime = runtime
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ingest-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current batch, then stop; the job stays claimed and resumes on the next start."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.runtime.sessions() as session:
                job = jobs.claim_job(session, self.worker, self.stale_after_s)
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._run(job.id)

    def _run(self, job_id: str) -> None:
        log.info("ingest job %s started by %s", job_id, self.worker)
        try:
            report = run_job(self.runtime, job_id, stop=self._stop)
            log.info("ingest job %s %s: %s", job_id, report.state, report.summary())
        except Exception as exc:  # a broken job must not kill the worker; its report says why
            log.exception("ingest job %s failed", job_id)
            with self.runtime.sessions() as session:
                job = session.get(IngestJob, job_id)
                job.state, job.error, job.finished_at = "failed", f"{type(exc).__name__}: {exc}"[:2048], utcnow()
                session.commit()
