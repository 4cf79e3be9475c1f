"""Ingest jobs through the API: ZIP and URL uploads, refusals, idempotent re-runs, per-item errors."""

import csv
import io

import pytest
from fastapi.testclient import TestClient
from helpers import authorize
from jobtools import catalogue_zip, image_server, wait_for_job, zip_of
from sqlalchemy import func, select

from app.catalog.models import Image
from app.ingest.manifest import KNOWN_COLUMNS
from app.main import create_app


@pytest.fixture
def client_for(make_services, tiny_embedder, backend):
    clients = []

    def start(**overrides) -> TestClient:
        services = make_services(tiny_embedder, job_poll_s=0.05, **{**backend, **overrides})
        client = TestClient(create_app(services.settings, services))
        client.__enter__()
        client.services = services
        authorize(client, services)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def post_job(client: TestClient, data: bytes, name: str = "catalogue.zip"):
    return client.post("/api/v1/ingest-jobs", files={"file": (name, data, "application/octet-stream")})


def image_count(services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(Image))


def test_zip_job_end_to_end_and_idempotent_rerun(client_for, catalogue):
    client = client_for()
    archive = catalogue_zip(catalogue, folder="spring-2026/")
    response = post_job(client, archive)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/api/v1/ingest-jobs/{response.json()['id']}"
    body = wait_for_job(client, response.json()["id"])
    assert body["state"] == "done", body
    assert (body["total"], body["done"], body["added"], body["failed"]) == (28, 28, 28, 0)
    assert body["images_per_s"] > 0 and set(body["stage_seconds"]) == {"read", "embed", "write"}
    assert len(client.services.index) == 28
    assert not (client.services.settings.jobs_dir / body["id"]).exists()  # unpacked files cleaned up

    again = wait_for_job(client, post_job(client, archive).json()["id"])
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 28)
    assert image_count(client.services) == 28 and len(client.services.index) == 28
    assert [job["id"] for job in client.get("/api/v1/ingest-jobs").json()] == [again["id"], body["id"]]


def test_url_job_with_per_item_errors(client_for, catalogue):
    images = catalogue.parent
    with image_server(images) as base:
        port = base.rsplit(":", 1)[1]
        rows = [
            ("F1", "P1", f"{base}/images/F001-P001-1.jpg"),
            ("F1", "P2", f"{base}/redirect?to={base}/images/F001-P002-1.jpg"),
            ("F1", "P3", f"{base}/images/missing.jpg"),
            ("F1", "P4", f"{base}/huge"),
            ("F1", "P5", f"{base}/slow"),
            ("F1", "P6", f"http://localhost:{port}/images/F001-P001-1.jpg"),  # not on the allow-list
            ("F1", "P7", f"{base}/redirect?to=http://169.254.169.254/latest/meta-data"),
            ("F1", "P8", "file:///etc/passwd"),
            ("F1", "P9", "images/F001-P001-1.jpg"),  # a relative path in an uploaded CSV has nothing to point at
        ]
        manifest = "factory_id,product_id,image\n" + "".join(f"{f},{p},{u}\n" for f, p, u in rows)
        client = client_for(url_allow_hosts=[f"127.0.0.1:{port}"], url_timeout_s=1.0, max_image_bytes=1_000_000)
        body = wait_for_job(client, post_job(client, manifest.encode(), "urls.csv").json()["id"])
    assert (body["state"], body["done"], body["added"], body["failed"]) == ("done", 9, 2, 7), body
    reasons = {error["line"]: error["reason"] for error in body["errors"]}
    assert "HTTP 404" in reasons[4]
    assert "limit" in reasons[5]
    assert "timed out" in reasons[6]
    assert "non-public address 127.0.0.1" in reasons[7]
    assert "non-public address 169.254.169.254" in reasons[8]
    assert "unsupported URL scheme" in reasons[9]
    assert "file not found" in reasons[10]


@pytest.mark.parametrize(
    ("members", "symlinks", "overrides", "message"),
    [
        ({"manifest.csv": b"factory_id,product_id,image\n", "../evil.jpg": b"x"}, (), {}, "unsafe"),
        ({"manifest.csv": b"factory_id,product_id,image\n", "/etc/cron.d/x": b"x"}, (), {}, "unsafe"),
        ({"manifest.csv": b"factory_id,product_id,image\n", "a\\..\\..\\b.jpg": b"x"}, (), {}, "unsafe"),
        (
            {"manifest.csv": b"factory_id,product_id,image\n", "link.jpg": b"/etc/passwd"},
            ("link.jpg",),
            {},
            "symbolic link",
        ),
        ({"manifest.csv": b"factory_id,product_id,image\n", "bomb.jpg": b"\0" * 20_000_000}, (), {}, "expands"),
        ({f"{i}.jpg": b"x" for i in range(6)}, (), {"max_zip_files": 5}, "6 files"),
        ({"manifest.csv": b"factory_id,product_id,image\n", "c:evil.jpg": b"x"}, (), {}, "unsafe"),
        ({"manifest.csv": b"factory_id,product_id,image\n", "C:/Windows/x.jpg": b"x"}, (), {}, "unsafe"),
        (
            {"manifest.csv": b"factory_id,product_id,image\n", "a.jpg": b"x" * 5000},
            (),
            {"max_zip_total_bytes": 4000},
            "unpacks to",
        ),
        ({"images/a.jpg": b"x"}, (), {}, "manifest.csv"),
        ({"manifest.csv": b"id,picture\n1,a.jpg\n"}, (), {}, "required column"),
    ],
)
def test_hostile_or_broken_archives_are_refused_and_leave_nothing(client_for, members, symlinks, overrides, message):
    client = client_for(**overrides)
    response = post_job(client, zip_of(members, symlinks))
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert client.get("/api/v1/ingest-jobs").json() == []
    assert list(client.services.settings.jobs_dir.iterdir()) == []
    assert not (client.services.settings.jobs_dir.parent / "evil.jpg").exists()


def test_upload_size_limits(client_for):
    client = client_for(max_job_upload_bytes=10_000)
    assert post_job(client, b"PK\x03\x04" + b"\0" * 20_000).status_code == 413
    response = post_job(client, b"garbage that is neither", "catalogue.pdf")
    assert response.status_code == 422 and "neither a ZIP" in response.json()["detail"]
    assert post_job(client, b"PK\x03\x04 truncated zip").status_code == 422
    assert client.get("/api/v1/ingest-jobs/unknown").status_code == 404


def test_deleting_a_product_after_a_job_removes_it_from_search(client_for, catalogue):
    client = client_for()
    wait_for_job(client, post_job(client, catalogue_zip(catalogue)).json()["id"])
    query = (catalogue.parent / "images" / "F002-P002-1.jpg").read_bytes()

    def top_product() -> str:
        files = {"image": ("q.jpg", query, "image/jpeg")}
        body = client.post("/api/v1/search", files=files, data={"include_weak": "true"}).json()
        return body["factories"][0]["matches"][0]["product_id"]

    assert top_product() == "F002-P002"
    assert client.delete("/api/v1/products/F002-P002").status_code == 204
    assert top_product() != "F002-P002"
    assert len(client.services.index) == 28 - 2 and image_count(client.services) == 26


def test_manifest_parse_errors_are_job_items(client_for, catalogue):
    client = client_for()
    lines = catalogue.read_text().splitlines()
    lines.insert(2, "F001,x,,bad id!,t,c,1,1,images/F001-P001-1.jpg,steel")
    members = {"manifest.csv": "\n".join(lines).encode()}
    members.update({f"images/{p.name}": p.read_bytes() for p in (catalogue.parent / "images").iterdir()})
    body = wait_for_job(client, post_job(client, zip_of(members)).json()["id"])
    assert (body["state"], body["total"], body["done"], body["added"], body["failed"]) == ("done", 29, 29, 28, 1)
    assert body["errors"][0]["line"] == 3 and "product_id" in body["errors"][0]["reason"]


def test_an_archive_at_the_member_limit_is_accepted(client_for, catalogue):
    manifest = "factory_id,product_id,image\n" + "".join(f"F1,P{i},images/{i}.jpg\n" for i in range(4))
    picture = (catalogue.parent / "images" / "F001-P001-1.jpg").read_bytes()
    members = {"manifest.csv": manifest.encode(), **{f"images/{i}.jpg": picture for i in range(4)}}
    members["images/"] = b""  # a directory entry is not a file and does not count
    client = client_for(max_zip_files=5)
    response = post_job(client, zip_of(members))
    assert response.status_code == 202, response.text
    body = wait_for_job(client, response.json()["id"])
    assert (body["state"], body["total"], body["added"], body["failed"]) == ("done", 4, 4, 0)


def test_a_job_is_cancelled_through_the_api(client_for, catalogue, monkeypatch):
    client = client_for()
    monkeypatch.setattr(client.services.runner, "wake", lambda: None)  # it stays queued while we look
    client.services.runner.stop()
    response = post_job(client, catalogue_zip(catalogue))
    job_id = response.json()["id"]
    assert (client.services.settings.jobs_dir / job_id).is_dir()
    cancelled = client.delete(f"/api/v1/ingest-jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["finished_at"] and cancelled.json()["done"] == 0
    assert not (client.services.settings.jobs_dir / job_id).exists()  # its files, not its report
    assert client.get(f"/api/v1/ingest-jobs/{job_id}").json()["state"] == "cancelled"
    assert client.delete(f"/api/v1/ingest-jobs/{job_id}").json()["state"] == "cancelled"  # twice: the same
    assert client.delete("/api/v1/ingest-jobs/nope").status_code == 404
    assert image_count(client.services) == 0


def test_a_locked_database_answers_503_with_retry_after(client_for):
    client = client_for(lock_wait_s=0.1)
    assert client.post("/api/v1/factories", json={"id": "F1", "name": "Acme"}).status_code == 201
    engine = client.services.engine
    with engine.connect() as locker:
        # Another writer holds the lock: SQLite's whole-database writer lock, PostgreSQL's row lock.
        if engine.dialect.name == "sqlite":
            locker.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            locker.exec_driver_sql("SELECT * FROM factories WHERE id = 'F1' FOR UPDATE")
        busy = client.patch("/api/v1/factories/F1", json={"name": "Renamed"})
        locker.rollback()
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
    assert "busy" in busy.json()["detail"]
    assert client.get("/api/v1/factories/F1").json()["name"] == "Acme"  # nothing half-done
    assert client.patch("/api/v1/factories/F1", json={"name": "Renamed"}).status_code == 200


def test_the_failed_rows_download_as_csv_with_their_reasons(client_for, catalogue):
    """The rows a factory must fix: each failed row's line, what was read from it and why it failed, every one
    of them (not the report's first thousand), safe to open in a spreadsheet."""
    client = client_for()
    lines = catalogue.read_text().splitlines()
    header = lines[0] + ",finish"
    good = [line + "," for line in lines[1:4]]
    bad = [
        "F001,x,,bad id!,t,c,1,1,images/F001-P001-1.jpg,steel,",  # unreadable: product_id
        'F001,Maker,Yiwu,F001-P900,=HYPERLINK("http://x"),cup,2.5,10,images/missing.jpg,,matte',
    ]
    members = {"manifest.csv": "\n".join([header, *good, *bad]).encode()}
    members.update({f"images/{p.name}": p.read_bytes() for p in (catalogue.parent / "images").iterdir()})
    job_id = wait_for_job(client, post_job(client, zip_of(members)).json()["id"])["id"]

    answer = client.get(f"/api/v1/ingest-jobs/{job_id}/errors")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert f'filename="errors-{job_id}.csv"' in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(rows[0]) == ["line", *KNOWN_COLUMNS, "finish", "error"]  # extra columns as read: no material
    assert [row["line"] for row in rows] == ["5", "6"]
    unreadable, missing = rows
    assert "product_id" in unreadable["error"] and unreadable["product_id"] == ""
    assert unreadable["image"] == "images/F001-P001-1.jpg"
    assert missing["product_id"] == "F001-P900" and missing["price"] == "2.5" and missing["finish"] == "matte"
    assert missing["title"] == '\'=HYPERLINK("http://x")'  # not run as a formula
    assert "missing.jpg" in missing["error"]
    assert client.get("/api/v1/ingest-jobs/nope/errors").status_code == 404


def test_a_job_without_failures_has_an_empty_errors_csv(client_for, catalogue):
    client = client_for()
    job_id = wait_for_job(client, post_job(client, catalogue_zip(catalogue)).json()["id"])["id"]
    answer = client.get(f"/api/v1/ingest-jobs/{job_id}/errors")
    assert answer.status_code == 200 and answer.text.splitlines() == ["line," + ",".join(KNOWN_COLUMNS) + ",error"]
