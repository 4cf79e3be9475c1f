"""The job store and the pipeline's durability: resume after a crash, claiming on the real PostgreSQL server."""

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.catalog.models import Image
from app.core.access import Principal, Role
from app.core.db import make_engine, make_session_factory, utcnow
from app.database import upgrade
from app.ingest.jobs import JobStore
from app.ingest.manifest import parse_manifest, read_manifest
from app.ingest.models import IngestItem, IngestJob


def image_count(services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(Image)) or 0


def test_job_resumes_after_a_crash_without_loss_or_duplicates(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder, embed_batch_size=4)
    job_id = services.jobs.create(read_manifest(catalogue), source="t", work_dir=str(catalogue.parent), confined=False)
    stop, seen = threading.Event(), []

    def crash_after_three_batches(count: int) -> None:
        seen.append(count)
        if len(seen) == 3:
            stop.set()

    first = services.ingest.run_job(job_id, crash_after_three_batches, stop)
    assert (first.state, first.done, first.added) == ("running", 12, 12)
    # The index never reached the disk: the restart must rebuild the 12 acknowledged vectors from the database.
    services.index.remove(services.index.ids())
    services.index.save()

    restarted = make_services(tiny_embedder, embed_batch_size=4)
    assert len(restarted.index) == 12
    assert restarted.jobs.requeue_running() == 1
    assert restarted.jobs.claim("worker-2", stale_after_s=300) == job_id
    final = restarted.ingest.run_job(job_id)
    assert (final.state, final.done, final.added, final.failed) == ("done", 28, 28, 0)
    assert final.elapsed_s > first.elapsed_s > 0  # the run time adds up over both runs' batches
    assert image_count(restarted) == 28
    assert restarted.jobs.count_items(job_id, "pending") == 0
    with restarted.sessions() as session:
        db_ids = sorted(session.scalars(select(Image.id)))
    assert sorted(restarted.index.ids().tolist()) == db_ids


def test_cli_style_ingest_resumes_its_unfinished_job(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder, embed_batch_size=8)
    stop = threading.Event()
    job_id = services.jobs.create(
        read_manifest(catalogue), source=str(catalogue.resolve()), work_dir=str(catalogue.parent), confined=False
    )
    services.ingest.run_job(job_id, lambda _: stop.set(), stop)
    report = services.ingest.ingest_manifest(catalogue)
    assert report.job_id == job_id and (report.done, report.added) == (28, 28)
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(IngestItem)) == 28


def test_a_job_counts_rows_that_failed_parsing_as_done(rolled_back_sessions):
    jobs = JobStore(rolled_back_sessions)
    rows = parse_manifest("factory_id,product_id,image,price\nF1,P1,a.jpg,1\nF1,bad id!,b.jpg,2\nF1,P2,c.jpg,free\n")
    job_id = jobs.create(rows, source="s", work_dir="/tmp", confined=True)
    report = jobs.report(job_id)
    assert (report.state, report.total, report.done, report.failed) == ("queued", 3, 2, 2)
    assert [(e.line, "product_id" in e.reason or "price" in e.reason) for e in report.errors] == [(3, True), (4, True)]
    assert jobs.count_items(job_id, "pending") == 1
    assert jobs.unfinished_for("s") == job_id and jobs.unfinished_for("other") is None
    jobs.fail(job_id, "disk full")
    failed = jobs.report(job_id)
    assert (failed.state, failed.error) == ("failed", "disk full") and failed.finished_at is not None
    assert jobs.unfinished_for("s") is None
    assert [r.job_id for r in jobs.recent(limit=1)] == [job_id]  # newest first


def test_a_report_and_the_failed_rows_tell_what_a_factory_needs(rolled_back_sessions):
    jobs = JobStore(rolled_back_sessions)
    factory = Principal(Role.FACTORY, frozenset({"F2", "F1"}), key_id=7)
    rows = parse_manifest("factory_id,product_id,image,price\nF1,bad id!,a.jpg,1\nF1,P2,b.jpg,free\nF1,P3,c.jpg,3\n")
    job_id = jobs.create(rows, source="upload:catalogue.zip", work_dir="/tmp", confined=True, owner=factory)
    jobs.create(
        parse_manifest("factory_id,product_id,image\nF1,bad id!,z.jpg\n"), source="x", work_dir="/", confined=True
    )
    report = jobs.report(job_id, max_errors=1)
    assert (report.source, report.factory_ids, report.total, report.failed) == (
        "upload:catalogue.zip",
        ["F1", "F2"],
        3,
        2,
    )
    assert [error.line for error in report.errors] == [2]  # as many errors as asked for
    failed = jobs.failed_rows(job_id, factory)  # this job's failed rows only, by line
    assert [(row.line, row.image, row.row) for row in failed] == [(2, "a.jpg", {}), (3, "b.jpg", {})]
    assert "product_id" in failed[0].reason and "price 'free'" in failed[1].reason


def test_a_long_manifest_keeps_every_row(rolled_back_sessions):
    jobs = JobStore(rolled_back_sessions)
    rows = parse_manifest("factory_id,product_id,image\n" + "".join(f"F1,P{i},{i}.jpg\n" for i in range(2001)))
    job_id = jobs.create(rows, source="s", work_dir="/tmp", confined=True)  # inserted 1,000 items at a time
    assert jobs.report(job_id).total == 2001 == jobs.count_items(job_id, "pending")


def test_only_other_queued_jobs_are_waiting(rolled_back_sessions):
    jobs = JobStore(rolled_back_sessions)
    first = jobs.create([], source="a", work_dir="/tmp", confined=True)
    second = jobs.create([], source="b", work_dir="/tmp", confined=True)
    assert jobs.others_waiting(first) and jobs.others_waiting(second)
    jobs.fail(first, "disk full")
    assert not jobs.others_waiting(second)  # a job is not waiting for itself, nor for one that ended


def test_the_newest_unfinished_run_of_a_manifest_is_resumed(rolled_back_sessions):
    jobs = JobStore(rolled_back_sessions)
    older = jobs.create([], source="m.csv", work_dir="/tmp", confined=False)
    newer = jobs.create([], source="m.csv", work_dir="/tmp", confined=False)
    assert jobs.unfinished_for("m.csv") == newer
    jobs.fail(newer, "stopped")
    assert jobs.unfinished_for("m.csv") == older


def test_a_factory_key_lists_only_its_own_jobs_page_by_page(rolled_back_sessions):
    jobs = JobStore(rolled_back_sessions)
    mine = Principal(Role.FACTORY, frozenset({"F1"}), key_id=7)
    other = Principal(Role.FACTORY, frozenset({"F2"}), key_id=8)
    owners = [mine, other, mine, mine]
    ids = [jobs.create([], source=f"s{i}", work_dir="/tmp", confined=True, owner=o) for i, o in enumerate(owners)]
    assert [report.job_id for report in jobs.recent(viewer=mine)] == [ids[3], ids[2], ids[0]]  # newest first
    assert [report.job_id for report in jobs.recent(viewer=mine, offset=1, limit=1)] == [ids[2]]
    assert [report.job_id for report in jobs.recent(viewer=other)] == [ids[1]]


def test_claim_skips_locked_jobs_and_retakes_silent_ones_on_postgres(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    jobs = JobStore(sessions)
    with sessions() as session:
        session.execute(IngestJob.__table__.delete())
        session.commit()
    first = jobs.create([], source="a", work_dir="/tmp", confined=True)
    second = jobs.create([], source="b", work_dir="/tmp", confined=True)
    with sessions() as holder:
        holder.scalar(select(IngestJob).where(IngestJob.id == first).with_for_update())  # worker A's lock
        assert jobs.claim("worker-b", stale_after_s=60) == second  # skipped the locked row, did not wait
        holder.commit()
    assert jobs.claim("worker-c", stale_after_s=60) == first
    assert jobs.claim("worker-d", stale_after_s=60) is None  # both fresh and running
    with sessions() as session:
        session.get(IngestJob, second).heartbeat_at = utcnow() - timedelta(seconds=120)
        session.commit()
    assert jobs.claim("worker-d", stale_after_s=60) == second
    with sessions() as session:
        assert session.get(IngestJob, second).worker == "worker-d"
    engine.dispose()


def test_a_row_the_database_refuses_is_that_rows_error_and_the_rest_is_stored(
    make_services, tiny_embedder, catalogue, monkeypatch, backend
):
    from app.catalog.models import Factory
    from app.ingest import writer

    real = writer._upsert_owner

    def refusing(session, row):
        if row.product_id == "F001-P002":
            session.add(Factory(id="F001", name="a second F001"))  # the database refuses: a duplicate key
        return real(session, row)

    monkeypatch.setattr(writer, "_upsert_owner", refusing)
    services = make_services(tiny_embedder, embed_batch_size=8, **backend)
    report = services.ingest.ingest_manifest(catalogue)
    refused = [e for e in report.errors if e.reason.startswith("not stored:")]
    assert (report.state, report.done, report.failed, report.added) == ("done", 28, 2, 26)
    assert len(refused) == 2 and all("F001-P002" in e.image for e in refused)
    assert image_count(services) == 26 == len(services.index)


def test_a_database_busy_for_a_moment_is_waited_out(make_services, tiny_embedder, catalogue):
    import sqlite3

    services = make_services(tiny_embedder, embed_batch_size=8, lock_wait_s=0.1)
    job_id = services.jobs.create(read_manifest(catalogue), source="m", work_dir=str(catalogue.parent), confined=False)
    db = services.settings.data_dir / "sourcelens.db"
    locker = sqlite3.connect(db, timeout=5, isolation_level=None, check_same_thread=False)
    held = []

    def lock_after_the_first_batch(_count):
        if not held:  # another writer takes the lock for a few seconds
            locker.execute("BEGIN IMMEDIATE")
            held.append(time.monotonic())
            threading.Timer(2.5, lambda: locker.execute("COMMIT")).start()

    report = services.ingest.run_job(job_id, lock_after_the_first_batch)
    assert (report.state, report.added, report.failed) == ("done", 28, 0)
    assert time.monotonic() - held[0] >= 2.5  # the next batch waited for the lock rather than failing the job
    locker.close()


def test_jobs_take_turns(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder, embed_batch_size=4, job_slice_s=0.001, job_poll_s=0.05)
    rows = read_manifest(catalogue)
    big = services.jobs.create(rows, source="big", work_dir=str(catalogue.parent), confined=False)
    small = services.jobs.create(rows[:2], source="small", work_dir=str(catalogue.parent), confined=False)
    services.runner.start(requeue_interrupted=False)
    deadline = time.monotonic() + 60
    while services.jobs.report(big).state != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    services.runner.stop()
    first, second = services.jobs.report(big), services.jobs.report(small)
    assert (first.state, second.state, first.done, second.done) == ("done", "done", 28, 2)
    # The older, bigger job went first, but the small one did not wait for all of it.
    assert second.finished_at < first.finished_at


def test_a_cancelled_job_stops_and_keeps_what_it_stored(make_services, tiny_embedder, catalogue, monkeypatch):
    services = make_services(tiny_embedder, embed_batch_size=4)
    rows = read_manifest(catalogue)
    job_dir = services.settings.jobs_dir / "upload"
    (job_dir / "files").mkdir(parents=True)
    for path in (catalogue.parent / "images").iterdir():
        (job_dir / "files" / path.name).write_bytes(path.read_bytes())
    rows = [replace(row, image=row.image.removeprefix("images/")) for row in rows]
    job_id = services.jobs.create(rows, source="u", work_dir=str(job_dir / "files"), confined=True, job_id="upload")
    batches = []

    def cancel_after_two(count):
        batches.append(count)
        if len(batches) == 2:
            services.intake.cancel(job_id, Principal.system())

    report = services.ingest.run_job(job_id, cancel_after_two)
    assert (report.state, report.done, report.added) == ("cancelled", 8, 8) and report.finished_at is not None
    assert not job_dir.exists()  # its files went when it stopped
    assert services.jobs.count_items(job_id, "pending") == 20 and image_count(services) == 8
    assert services.ingest.run_job(job_id).state == "cancelled"  # it is not picked up again


def test_a_failed_job_keeps_its_report_not_its_files(make_services, tiny_embedder, catalogue, monkeypatch):
    services = make_services(tiny_embedder, job_poll_s=0.05)
    job_dir = services.settings.jobs_dir / "broken"
    job_dir.mkdir(parents=True)
    (job_dir / "upload.zip").write_bytes(b"x" * 1000)
    job_id = services.jobs.create(
        read_manifest(catalogue)[:1], source="b", work_dir=str(job_dir), job_id="broken", confined=True
    )

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.ingest, "run_job", explode)
    services.runner.start(requeue_interrupted=False)
    deadline = time.monotonic() + 20
    while services.jobs.report(job_id).state != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    services.runner.stop()
    report = services.jobs.report(job_id)
    assert report.state == "failed" and report.error == "RuntimeError: disk on fire"
    assert not job_dir.exists()


def test_a_stopping_runner_checkpoints_its_job_for_any_worker_to_resume(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder, embed_batch_size=2, job_poll_s=0.05)
    job_id = services.jobs.create(read_manifest(catalogue), source="s", work_dir=str(catalogue.parent), confined=False)
    services.runner.start(requeue_interrupted=False)
    deadline = time.monotonic() + 60
    while services.jobs.report(job_id).done < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    services.runner.stop()  # what SIGTERM does: the batch in hand finishes, then the job is queued again
    stopped = services.jobs.report(job_id)
    assert stopped.state == "queued" and 4 <= stopped.done < 28 and image_count(services) == stopped.done
    services.runner.start(requeue_interrupted=False)  # not told to requeue: the job was already
    while services.jobs.report(job_id).state != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    services.runner.stop()
    resumed = services.jobs.report(job_id)
    assert (resumed.state, resumed.done, resumed.added) == ("done", 28, 28) and image_count(services) == 28


def test_a_batch_cut_off_before_its_commit_leaves_nothing_stored(make_services, tiny_embedder, catalogue, backend):
    """A crash between a batch's rows and its commit: no row may be durable (each row has its own savepoint,
    and on SQLite a savepoint opened outside a transaction used to commit itself on release)."""
    import app.ingest.writer as writer

    services = make_services(tiny_embedder, embed_batch_size=4, **backend)
    job_id = services.jobs.create(read_manifest(catalogue), source="t", work_dir=str(catalogue.parent), confined=False)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("the process dies here")  # not an Exception: nothing handles it

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "_acknowledge", crash)
        with pytest.raises(KeyboardInterrupt):
            services.ingest.run_job(job_id)
    other = make_engine(services.settings.resolved_database_url)  # what another process sees
    with make_session_factory(other)() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 0
        assert session.scalar(select(func.count()).where(IngestItem.state == "done")) == 0
    other.dispose()
    report = services.ingest.run_job(job_id)  # and the job still completes, every row once
    assert (report.state, report.added, report.failed) == ("done", 28, 0) and image_count(services) == 28
