"""Batch query jobs through the HTTP API: submitted by a search key, run by the server's runner, results as
JSON and CSV; refusals are clear."""

import csv
import io
import time
import zipfile

import pytest
from fastapi.testclient import TestClient
from helpers import catalogue_image, module_services

from app.main import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory, effnet_embedder, catalogue):
    services = module_services(tmp_path_factory, effnet_embedder, embed_batch_size=16)
    assert services.ingest.ingest_manifest(catalogue).added == 28
    with TestClient(create_app(services.settings, services)) as test_client:
        test_client.headers["Authorization"] = "Bearer " + services.keys.create("seller", "search").token
        yield test_client
    services.close()


def wait_done(client: TestClient, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while (job := client.get(f"/api/v1/query-jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def test_a_zip_of_photos_comes_back_as_json_and_csv(client, catalogue):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("F001-P002-1.jpg", "F003-P003-1.jpg"):
            archive.write(catalogue_image(catalogue, name), name)
        archive.writestr("zz-broken.jpg", b"nope")
    files = {"file": ("shots.zip", buffer.getvalue(), "application/zip")}
    response = client.post("/api/v1/query-jobs", files=files, data={"top_k": "2"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.headers["Location"] == f"/api/v1/query-jobs/{job_id}"
    job = wait_done(client, job_id)
    assert (job["state"], job["total"], job["done"], job["failed"]) == ("done", 3, 3, 1)
    assert job["options"]["top_k"] == 2
    answers = client.get(f"/api/v1/query-jobs/{job_id}/results").json()
    assert [a["name"] for a in answers] == ["F001-P002-1.jpg", "F003-P003-1.jpg", "zz-broken.jpg"]
    assert answers[0]["answer"]["factories"][0]["factory_id"] == "F001" and answers[2]["error"]
    table = client.get(f"/api/v1/query-jobs/{job_id}/results", params={"format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert rows[0]["rank"] == "1" and rows[0]["factory_id"] == "F001" and rows[0]["match_level"] == "identical"
    assert rows[-1]["name"] == "zz-broken.jpg" and rows[-1]["rank"] == "" and rows[-1]["error"]
    assert job_id in [j["id"] for j in client.get("/api/v1/query-jobs").json()]


def test_refusals_say_why(client):
    bad = client.post("/api/v1/query-jobs", files={"file": ("x.pdf", b"%PDF", "application/pdf")})
    assert bad.status_code == 422 and "neither a ZIP" in bad.json()["detail"]
    wrong_k = client.post(
        "/api/v1/query-jobs", files={"file": ("u.txt", b"http://a/b.jpg\n", "text/plain")}, data={"top_k": "50"}
    )
    assert wrong_k.status_code == 422
    assert client.get("/api/v1/query-jobs/nope/results", params={"format": "xml"}).status_code == 422
    assert client.get("/api/v1/query-jobs/nope").status_code == 404
