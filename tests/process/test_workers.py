"""`sourcelens worker` processes on the real PostgreSQL server: a worker killed with SIGKILL mid-job has its job
finished by another, every row exactly once; batch query jobs are claimed the same way; a server told not to run
jobs leaves them to a worker, which stops cleanly on SIGTERM."""

import io
import json
import os
import signal
import subprocess
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
from jobtools import catalogue_zip
from sqlalchemy import Engine, text
from test_crash_and_shutdown import env_for, start
from test_kill_and_memory import SCRIPT, free_port

from app.batch.models import QueryItem, QueryJob
from app.batch.service import QueryPlan
from app.core.db import make_session_factory
from app.demo.sample_catalogue import write_catalogue
from app.ingest.jobs import JobStore
from app.ingest.manifest import read_manifest

pytestmark = pytest.mark.process

STALE_S = 3  # the lease: a worker silent this long is presumed dead


def worker_env(data_dir: Path, url: str, **extra: str) -> dict[str, str]:
    return env_for(
        data_dir,
        SOURCELENS_DATABASE_URL=url,
        SOURCELENS_JOB_POLL_S="0.2",
        SOURCELENS_JOB_STALE_AFTER_S=str(STALE_S),
        SOURCELENS_LOG_FORMAT="json",
        **extra,
    )


def start_workers(env: dict[str, str], logs: list[Path]) -> list[subprocess.Popen]:
    """`sourcelens worker` processes, started together, once each has said it is running."""
    processes = []
    for log in logs:
        with log.open("ab") as sink:
            processes.append(subprocess.Popen([str(SCRIPT), "worker"], env=env, stdout=sink, stderr=sink))
    for process, log in zip(processes, logs, strict=True):
        wait_for(lambda: "SourceLens worker" in log.read_text() or process.poll() is not None, 90, log)  # noqa: B023
        assert process.poll() is None, log.read_text()[-3000:]
    return processes


def wait_for(condition: Callable[[], object], seconds: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, log.read_text()[-3000:] if log else "timed out"
        time.sleep(0.05)


def one(engine: Engine, sql: str, **params: object) -> tuple:
    with engine.connect() as connection:
        return tuple(connection.execute(text(sql), params).one())


def stop_all(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_killed_workers_job_is_finished_by_another_with_nothing_lost_or_duplicated(tmp_path, database):
    url, engine = database
    manifest = write_catalogue(tmp_path / "catalogue", factories=10, products_per_factory=18, size=160)
    rows = read_manifest(manifest)
    total, products = len(rows), len({row.product_id for row in rows})
    data_dir = tmp_path / "data"
    env = worker_env(data_dir, url, SOURCELENS_EMBED_BATCH_SIZE="1")  # small write batches: a job of ~300
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = start_workers(env, logs)
    try:
        warning = [json.loads(line) for line in logs[0].read_text().splitlines() if "FAISS index" in line]
        assert warning and warning[0]["level"] == "WARNING"  # one line, saying what FAISS means for a worker
        sessions = make_session_factory(engine)
        job_id = JobStore(sessions).create(rows, source="m", work_dir=str(manifest.parent), confined=False)
        sql = "SELECT worker, done FROM ingest_jobs WHERE id = :id"
        wait_for(lambda: one(engine, sql, id=job_id)[1] >= 20, 60)
        holder, _ = one(engine, sql, id=job_id)
        victim = next(w for w in workers if holder.endswith(f":{w.pid}"))
        survivor = next(w for w in workers if w is not victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        acknowledged = one(engine, sql, id=job_id)[1]
        assert acknowledged < total, "the job finished before the kill; the test needs a slower job"

        state = "SELECT state, worker, done, added, updated, unchanged, failed FROM ingest_jobs WHERE id = :id"
        wait_for(lambda: one(engine, state, id=job_id)[0] == "done", 60, logs[workers.index(survivor)])
        finished = one(engine, state, id=job_id)
        assert finished == ("done", holder.rsplit(":", 1)[0] + f":{survivor.pid}", total, total, 0, 0, 0)
        took_over_after = time.monotonic() - killed_at
        assert took_over_after >= STALE_S - 1  # not before the lease ran out

        counts = (
            "SELECT (SELECT count(*) FROM ingest_items WHERE job_id = :id AND state = 'done'),"
            " (SELECT count(*) FROM ingest_items WHERE job_id = :id AND outcome = 'added'),"
            " (SELECT count(*) FROM images), (SELECT count(DISTINCT content_hash) FROM images),"
            " (SELECT count(DISTINCT (product_id, content_hash)) FROM images),"
            " (SELECT count(*) FROM products), (SELECT count(*) FROM factories)"
        )
        assert one(engine, counts, id=job_id) == (total, total, total, total, total, products, 10)

        # A batch query job, claimed and answered by the worker left.
        query_id = uuid.uuid4().hex
        names = [row.image.removeprefix("images/") for row in rows[:4]]
        photos = data_dir / "query-jobs" / query_id
        photos.mkdir(parents=True)
        for name in names:
            (photos / name).write_bytes((manifest.parent / "images" / name).read_bytes())
        with sessions.begin() as session:
            session.add(
                QueryJob(
                    id=query_id, state="queued", source="t", options=asdict(QueryPlan()), total=4, done=0, failed=0
                )
            )
            session.flush()
            session.add_all(QueryItem(job_id=query_id, number=n, name=name) for n, name in enumerate(names, 1))
        query = "SELECT state, worker, done, failed FROM query_jobs WHERE id = :id"
        wait_for(lambda: one(engine, query, id=query_id)[0] == "done", 30)
        assert one(engine, query, id=query_id)[1:] == (finished[1], 4, 0)
        answered = "SELECT count(*) FROM query_items WHERE job_id = :id AND answer IS NOT NULL"
        assert one(engine, answered, id=query_id) == (4,)
    finally:
        stop_all(*workers)


def admin_key(env: dict[str, str]) -> dict[str, str]:
    made = subprocess.run(
        [str(SCRIPT), "keys", "create", "--name", "t", "--role", "admin"], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    return {"Authorization": "Bearer " + made.stdout.split(": ", 1)[1].strip()}


def test_a_server_that_runs_no_jobs_leaves_them_to_a_worker(tmp_path, database, catalogue):
    url, _ = database
    data_dir, port = tmp_path / "data", free_port()
    env = worker_env(data_dir, url)
    key = admin_key(env)
    shared = {"SOURCELENS_DATABASE_URL": url, "SOURCELENS_JOB_POLL_S": "0.2", "SOURCELENS_RUN_JOBS": "false"}
    server = start(data_dir, port, tmp_path / "server.log", **shared)
    worker = None
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=key, timeout=30)
        files = {"file": ("c.zip", catalogue_zip(catalogue), "application/zip")}
        ingest_id = client.post("/api/v1/ingest-jobs", files=files).json()["id"]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name in ("F001-P001-1.jpg", "F002-P002-1.jpg"):
                archive.write(catalogue.parent / "images" / name, name)
        photos = {"file": ("p.zip", buffer.getvalue(), "application/zip")}
        query_id = client.post("/api/v1/query-jobs", files=photos).json()["id"]
        time.sleep(1.5)  # several of the server's job polls
        assert client.get(f"/api/v1/ingest-jobs/{ingest_id}").json()["state"] == "queued"
        assert client.get(f"/api/v1/query-jobs/{query_id}").json()["state"] == "queued"

        [worker] = start_workers(env, [tmp_path / "worker.log"])
        wait_for(lambda: client.get(f"/api/v1/ingest-jobs/{ingest_id}").json()["state"] == "done", 60)
        wait_for(lambda: client.get(f"/api/v1/query-jobs/{query_id}").json()["state"] == "done", 30)
        ingested = client.get(f"/api/v1/ingest-jobs/{ingest_id}").json()
        assert (ingested["done"], ingested["added"], ingested["failed"]) == (28, 28, 0)
        results = client.get(f"/api/v1/query-jobs/{query_id}/results").json()
        assert len(results) == 2 and all(r["error"] is None and r["answer"] for r in results)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0  # stops cleanly, and says so
        assert "stopping after the work in hand" in (tmp_path / "worker.log").read_text()
        meta = data_dir / "index" / "meta.json"  # the server's index: the worker kept its own in memory
        assert not meta.exists() or json.loads(meta.read_text())["count"] == 0
    finally:
        stop_all(*([worker] if worker else []))
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
