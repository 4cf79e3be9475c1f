"""Leases on claimed jobs, ingest and batch query alike, on SQLite and on the real PostgreSQL server: two claimers
never get the same job, a job whose worker went silent is taken over and a fresh one is not, and a worker that
lost its job writes nothing more for it (the fence)."""

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.batch.models import QueryItem, QueryJob
from app.batch.service import BatchQueries
from app.catalog.models import Image
from app.core.db import make_engine, make_session_factory, utcnow
from app.core.lease import Heartbeat, LeaseLost
from app.database import upgrade
from app.ingest.jobs import JobStore
from app.ingest.manifest import read_manifest
from app.ingest.models import IngestItem, IngestJob


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on a database of this test's own, shared by threads as by processes (a file, not a rollback)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'leases.db'}"
    else:
        url = str(request.getfixturevalue("empty_postgres_url"))
    engine = make_engine(url, lock_wait_s=10)
    upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def query_store(sessions: sessionmaker[Session]) -> BatchQueries:
    """Only the claiming part of the service is used: no search, no fetcher."""
    return BatchQueries(
        sessions=sessions,
        search=None,
        fetcher=None,
        jobs_dir=Path("/nonexistent"),
        zip_limits=None,
        max_bytes=1,
        max_items=1,
    )


def add_query_job(sessions: sessionmaker[Session], job_id: str, photos: int = 1) -> str:
    with sessions.begin() as session:
        session.add(QueryJob(id=job_id, state="queued", source="t", options={}, total=photos, done=0, failed=0))
        session.flush()
        session.add_all(QueryItem(job_id=job_id, number=n, name=f"{n}.jpg") for n in range(1, photos + 1))
    return job_id


def go_silent(sessions: sessionmaker[Session], table: type, job_id: str, seconds: float = 120) -> None:
    with sessions.begin() as session:
        session.execute(
            update(table).where(table.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=seconds))
        )


def done(sessions: sessionmaker[Session], table: type, job_id: str) -> None:
    with sessions.begin() as session:
        session.execute(update(table).where(table.id == job_id).values(state="done"))


def claim_all_at_once(claim, finish, claimers: int = 4) -> list[tuple[str, str]]:
    """Claimers in threads, each claiming and finishing jobs until nothing is left: (worker, job) per claim."""
    claims: list[tuple[str, str]] = []
    ready = threading.Barrier(claimers)

    def work(worker: str) -> None:
        ready.wait()
        while (job_id := claim(worker, 300)) is not None:
            claims.append((worker, job_id))
            finish(job_id)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return claims


def test_two_claimers_never_get_the_same_ingest_job(sessions):
    jobs = JobStore(sessions)
    created = {jobs.create([], source=f"s{n}", work_dir="/tmp", confined=True) for n in range(24)}
    claims = claim_all_at_once(jobs.claim, lambda job_id: done(sessions, IngestJob, job_id))
    claimed = [job_id for _, job_id in claims]
    assert sorted(claimed) == sorted(created)  # every job once, none twice
    with sessions() as session:
        holders = dict(list(session.execute(select(IngestJob.id, IngestJob.worker))))
    assert holders == {job_id: worker for worker, job_id in claims}


def test_two_claimers_never_get_the_same_query_job(sessions):
    queries = query_store(sessions)
    created = {add_query_job(sessions, f"q{n:02d}") for n in range(24)}
    claims = claim_all_at_once(queries.claim, lambda job_id: done(sessions, QueryJob, job_id))
    assert sorted(job_id for _, job_id in claims) == sorted(created)
    with sessions() as session:
        holders = dict(list(session.execute(select(QueryJob.id, QueryJob.worker))))
    assert holders == {job_id: worker for worker, job_id in claims}


def test_a_silent_ingest_job_is_taken_over_and_a_fresh_one_is_not(sessions):
    jobs = JobStore(sessions)
    job_id = jobs.create([], source="s", work_dir="/tmp", confined=True)
    assert jobs.claim("a", stale_after_s=60) == job_id
    assert jobs.claim("b", stale_after_s=60) is None  # a's heartbeat is fresh
    assert jobs.heartbeat(job_id, "a")
    go_silent(sessions, IngestJob, job_id, seconds=30)
    assert jobs.claim("b", stale_after_s=60) is None  # 30 s of silence is within the lease
    go_silent(sessions, IngestJob, job_id, seconds=120)
    assert jobs.claim("b", stale_after_s=60) == job_id
    assert not jobs.heartbeat(job_id, "a")  # a, come back, learns the job is b's
    assert jobs.heartbeat(job_id, "b")
    jobs.requeue(job_id, "a")  # a's stop does not put b's job back in the queue
    assert jobs.report(job_id).state == "running"
    jobs.requeue(job_id, "b")
    assert jobs.report(job_id).state == "queued"


def test_a_silent_query_job_is_taken_over_and_a_fresh_one_is_not(sessions):
    queries = query_store(sessions)
    job_id = add_query_job(sessions, "q1", photos=2)
    assert queries.claim("a", stale_after_s=60) == job_id
    assert queries.claim("b", stale_after_s=60) is None
    assert queries.claim("a", stale_after_s=60) == job_id  # a job a worker left off is its own to go on with
    assert queries._record(job_id, "a", 1, {"factories": []}, None)
    go_silent(sessions, QueryJob, job_id, seconds=30)
    assert queries.claim("b", stale_after_s=60) is None
    go_silent(sessions, QueryJob, job_id, seconds=120)
    assert queries.claim("b", stale_after_s=60) == job_id
    assert not queries.heartbeat(job_id, "a") and queries.heartbeat(job_id, "b")
    assert not queries._record(job_id, "a", 2, {"factories": []}, None)  # fenced: a writes nothing more
    assert queries._finish(job_id, "a") == "lost"
    with sessions() as session:
        job = session.get(QueryJob, job_id)
        assert (job.state, job.done, job.worker) == ("running", 1, "b")
        assert session.get(QueryItem, (job_id, 2)).answer is None
    queries.release(job_id, "a")  # not a's to release
    assert queries.claim("c", stale_after_s=60) is None
    queries.release(job_id, "b")  # b stops: any worker may go on at once
    assert queries.claim("c", stale_after_s=60) == job_id
    assert queries.run(job_id, "b", threading.Event()) == "lost"


def test_a_running_query_job_of_an_older_version_without_a_heartbeat_is_claimable(sessions):
    queries = query_store(sessions)
    job_id = add_query_job(sessions, "old")
    with sessions.begin() as session:
        session.get(QueryJob, job_id).state = "running"  # left running by a server without leases
    assert queries.claim("a", stale_after_s=300) == job_id


def test_a_worker_that_lost_its_ingest_job_writes_no_more_of_it(make_services, tiny_embedder, catalogue, backend):
    services = make_services(tiny_embedder, embed_batch_size=4, **backend)
    jobs = services.jobs
    job_id = jobs.create(read_manifest(catalogue), source="t", work_dir=str(catalogue.parent), confined=False)
    assert jobs.claim("a", stale_after_s=60) == job_id
    batches: list[int] = []

    def taken_over_after_two_batches(count: int) -> None:
        batches.append(count)
        if len(batches) == 2:  # a stalls; its lease runs out and b takes the job
            go_silent(services.sessions, IngestJob, job_id)
            assert jobs.claim("b", stale_after_s=60) == job_id

    with pytest.raises(LeaseLost, match="is now b's"):
        services.ingest.run_job(job_id, taken_over_after_two_batches, worker="a")
    report = jobs.report(job_id)
    assert (report.state, report.done, report.added) == ("running", 8, 8)  # a's third batch was not written
    with pytest.raises(LeaseLost):
        services.ingest.run_job(job_id, worker="a")  # nor does a start again on it
    final = services.ingest.run_job(job_id, worker="b")
    assert (final.state, final.done, final.added, final.failed) == ("done", 28, 28, 0)
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 28
        assert session.scalar(select(func.count(func.distinct(Image.content_hash)))) == 28
        assert session.scalar(select(func.count()).where(IngestItem.state == "pending")) == 0


def test_the_heartbeat_beats_until_the_lease_is_lost():
    beats: list[float] = []

    def beat() -> bool:
        beats.append(time.monotonic())
        if len(beats) == 2:
            raise RuntimeError("the database is down for a moment")
        return len(beats) < 4

    with Heartbeat(beat, every_s=0.02) as lease:
        assert lease.lost.wait(5)
    assert len(beats) == 4  # a failed beat is tried again; a refused one ends the beating
    with Heartbeat(lambda: True, every_s=10) as idle:
        pass  # leaving the block stops the thread at once, without waiting for a beat
    assert not idle.lost.is_set()
