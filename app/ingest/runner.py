"""Runs ingest jobs on a background thread of the server process (the embedded default).

Jobs take turns: one runs for at most `slice_s` while others wait, then goes back in the queue behind them, so a
large or slow job (URLs that trickle in) cannot hold the others back. A job is failed only for a reason that
concerns the whole job; a database busy for now puts it back in the queue instead. Several processes sharing a
PostgreSQL database can each run one (`sourcelens worker`): claiming skips rows another worker has locked, a
heartbeat thread keeps the claimed job's lease fresh, and a job whose worker stopped sending heartbeats (it died)
is taken over after `stale_after_s`; each batch is written only while the job is still this worker's.
"""

import logging
import threading
import time

from app.core.db import transient_retry_after
from app.core.lease import Heartbeat, LeaseLost, worker_name
from app.ingest.intake import remove_job_files
from app.ingest.jobs import JobStore
from app.ingest.pipeline import IngestPipeline

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(
        self, pipeline: IngestPipeline, jobs: JobStore, *, poll_s: float, stale_after_s: float, slice_s: float = 60.0
    ) -> None:
        self.pipeline = pipeline
        self.jobs = jobs
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.slice_s = slice_s
        self.worker = worker_name()
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

    def request_stop(self) -> None:
        """Ask the worker to stop after its current batch, without waiting (safe in a signal handler)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current batch, then stop; the job goes back in the queue, for this process's next start
        or another worker to resume where it stopped."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self.jobs.claim(self.worker, self.stale_after_s)
            except Exception as exc:  # the database is down or busy: try again at the next poll
                log.warning("cannot claim ingest jobs now: %s", str(exc).splitlines()[0])
                job_id = None
            if job_id is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._run(job_id)

    def _run(self, job_id: str) -> None:
        log.info("ingest job %s started by %s", job_id, self.worker)
        lease = Heartbeat(lambda: self.jobs.heartbeat(job_id, self.worker), self.stale_after_s / 4, "ingest-lease")
        try:
            with lease:
                until = time.monotonic() + self.slice_s
                report = self.pipeline.run_job(job_id, stop=self._stop, until=until, worker=self.worker)
            if report.state == "running":  # its turn is up, or the server is stopping: checkpointed, queued again
                self.jobs.requeue(job_id, self.worker)
            log.info("ingest job %s %s: %s", job_id, report.state, report.summary())
        except LeaseLost as exc:  # this worker was presumed dead; the job goes on with the one that took it over
            log.warning("ingest job %s left to another worker: %s", job_id, exc)
        except Exception as exc:  # a broken job must not kill the worker; its report says why
            if (retry := transient_retry_after(exc)) is not None:
                log.warning("ingest job %s paused, the database is busy: %s", job_id, str(exc).splitlines()[0])
                self.jobs.requeue(job_id, self.worker)
                self._stop.wait(retry)
                return
            log.exception("ingest job %s failed", job_id)
            self.jobs.fail(job_id, f"{type(exc).__name__}: {exc}")
            remove_job_files(self.pipeline.settings.jobs_dir, job_id)  # a report is kept, not its payload
