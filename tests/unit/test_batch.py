"""Batch query jobs: a ZIP of photos or a list of URLs searched one by one, every photo answered or given its
error, resumable after a stop, cancellable, seen only by its key, refused when the upload itself is bad."""

import io
import threading
import zipfile

import pytest
from helpers import catalogue_image, jpeg_bytes
from PIL import Image

from app.batch.service import BatchQueries, QueryPlan, read_urls
from app.core.access import Principal, Role
from app.core.errors import AuthenticationError, InvalidInputError, NotFoundError

SELLER = Principal(Role.SEARCH, key_id=7, name="seller")
OTHER = Principal(Role.SEARCH, key_id=8, name="other")
ADMIN = Principal(Role.ADMIN, key_id=1, name="admin")


@pytest.fixture
def services(make_services, effnet_embedder, catalogue, images_site):
    services = make_services(effnet_embedder, url_allow_hosts=[images_site.removeprefix("http://")])
    assert services.ingest.ingest_manifest(catalogue).added == 28
    return services


def photos_zip(catalogue, names: list[str], extra: dict[str, bytes] | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.write(catalogue_image(catalogue, name), f"shots/{name}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def run_to_end(queries: BatchQueries) -> None:
    while queries.run_next(threading.Event()):
        pass


def test_a_zip_of_photos_is_answered_photo_by_photo(services, catalogue):
    upload = photos_zip(
        catalogue,
        ["F002-P001-1.jpg", "F004-P002-1.jpg"],
        {
            "shots/broken.jpg": b"not a jpeg",
            "notes.txt": b"ignored",
            "shots/.hidden.jpg": jpeg_bytes(Image.new("RGB", (9, 9))),
        },
    )
    job = services.queries.submit("photos.zip", upload, QueryPlan(top_k=2), SELLER)
    assert (job.state, job.total, job.done) == ("queued", 3, 0)  # three photos; the text and the hidden file left out
    run_to_end(services.queries)
    job = services.queries.get(job.id, SELLER)
    assert (job.state, job.done, job.failed) == ("done", 3, 1) and job.finished_at is not None
    items = {item.name: item for item in services.queries.results(job.id, SELLER)}
    assert items["shots/F002-P001-1.jpg"].answer["factories"][0]["factory_id"] == "F002"
    assert items["shots/F004-P002-1.jpg"].answer["factories"][0]["match_level"] == "identical"
    assert len(items["shots/F004-P002-1.jpg"].answer["factories"]) <= 2 and items["shots/F002-P001-1.jpg"].error is None
    assert items["shots/broken.jpg"].answer is None and items["shots/broken.jpg"].error
    assert not (services.settings.query_jobs_dir / job.id).exists()  # the upload goes once the job is over


def test_a_list_of_urls_is_fetched_and_a_bad_one_is_that_photos_error(services, images_site):
    lines = f"url\n{images_site}/F003-P002-1.jpg\n{images_site}/missing.jpg\n".encode()
    job = services.queries.submit("urls.csv", io.BytesIO(lines), QueryPlan(), SELLER)
    run_to_end(services.queries)
    first, second = services.queries.results(job.id, SELLER)
    assert first.answer["factories"][0]["factory_id"] == "F003" and first.answer["categories"]
    assert second.answer is None and "404" in second.error
    assert services.queries.get(job.id, SELLER).failed == 1


def test_a_stopped_job_goes_on_where_it_stopped(services, catalogue, monkeypatch):
    names = ["F001-P001-1.jpg", "F001-P002-1.jpg", "F003-P001-1.jpg"]
    job = services.queries.submit("p.zip", photos_zip(catalogue, names), QueryPlan(), SELLER)
    stop, searched = threading.Event(), []
    search = services.search.run

    def counting(*args, **kwargs):
        searched.append(1)
        if len(searched) == 1:
            stop.set()  # shut down while the first photo is searched: it is finished and kept
        return search(*args, **kwargs)

    monkeypatch.setattr(services.search, "run", counting)
    assert services.queries.run_next(stop)
    assert services.queries.get(job.id, SELLER).state == "running" and services.queries.get(job.id, SELLER).done == 1
    run_to_end(services.queries)  # as a restarted server's runner would
    assert services.queries.get(job.id, SELLER).done == 3 and len(searched) == 3  # none searched twice


def test_a_cancelled_job_stops_and_keeps_its_answers(services, catalogue):
    job = services.queries.submit("p.zip", photos_zip(catalogue, ["F001-P001-1.jpg"]), QueryPlan(), SELLER)
    assert services.queries.cancel(job.id, SELLER).state == "cancelled"
    assert not services.queries.run_next(threading.Event())  # nothing left to do
    assert services.queries.results(job.id, SELLER)[0].answer is None


def test_a_job_is_seen_by_its_key_and_admins_only_and_needs_a_key(services, catalogue):
    job = services.queries.submit("p.zip", photos_zip(catalogue, ["F001-P001-1.jpg"]), QueryPlan(), SELLER)
    assert services.queries.get(job.id, ADMIN).id == job.id
    for act in (services.queries.get, services.queries.results, services.queries.cancel):
        with pytest.raises(NotFoundError):
            act(job.id, OTHER)
    assert [j.id for j in services.queries.recent(SELLER)] == [job.id] and services.queries.recent(OTHER) == []
    with pytest.raises(AuthenticationError, match="API key"):
        services.queries.submit("p.zip", photos_zip(catalogue, ["F001-P001-1.jpg"]), QueryPlan(), Principal(None))


def test_bad_uploads_are_refused_and_leave_nothing(services, catalogue):
    queries = services.queries
    queries.max_items = 2
    too_many = photos_zip(catalogue, ["F001-P001-1.jpg", "F001-P002-1.jpg", "F001-P003-1.jpg"])
    cases = [
        ("p.zip", too_many, QueryPlan(), "the limit is 2"),
        ("p.zip", photos_zip(catalogue, [], {"a.txt": b"x"}), QueryPlan(), "no photos"),
        ("p.pdf", io.BytesIO(b"%PDF-1.4"), QueryPlan(), "neither a ZIP"),
        ("p.zip", photos_zip(catalogue, ["F001-P001-1.jpg"]), QueryPlan(top_k=11), "top_k"),
        ("u.txt", io.BytesIO(b"file:///etc/passwd\n"), QueryPlan(), r"not an http\(s\) URL"),
        ("p.zip", io.BytesIO(b"PK\x03\x04 broken"), QueryPlan(), "ZIP"),
    ]
    for name, upload, plan, reason in cases:
        with pytest.raises(InvalidInputError, match=reason):
            queries.submit(name, upload, plan, SELLER)
    assert queries.recent(ADMIN) == [] and list(services.settings.query_jobs_dir.iterdir()) == []


def test_url_lists_take_a_url_or_image_column_or_one_url_per_line():
    assert read_urls(b"http://a/1.jpg\n\nhttps://b/2.png\n") == ["http://a/1.jpg", "https://b/2.png"]
    assert read_urls(b"name,url\nx,http://a/1.jpg\n") == ["http://a/1.jpg"]
    assert read_urls(b"\xef\xbb\xbfimage\nhttp://a/1.jpg\n") == ["http://a/1.jpg"]
    with pytest.raises(InvalidInputError, match="UTF-8"):
        read_urls(b"\xff\xfe\x00h")


def test_a_photo_the_search_cannot_handle_is_that_photos_error_not_a_stalled_job(services, catalogue, monkeypatch):
    job = services.queries.submit(
        "p.zip", photos_zip(catalogue, ["F001-P001-1.jpg", "F002-P001-1.jpg"]), QueryPlan(), SELLER
    )
    search, calls = services.search.run, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("an unexpected failure")
        return search(*args, **kwargs)

    monkeypatch.setattr(services.search, "run", flaky)
    run_to_end(services.queries)
    first, second = services.queries.results(job.id, SELLER)
    assert first.error == "could not be searched (RuntimeError)" and second.answer is not None
    assert services.queries.get(job.id, SELLER).state == "done"
