"""Request-body limits: each path gets its own cap, declared or not, before anything is parsed or stored."""

import pytest
from fastapi.testclient import TestClient
from helpers import authorize
from jobtools import catalogue_zip

from app.main import create_app


@pytest.fixture
def client(make_services, tiny_embedder):
    # A search or image upload may be 20 KB; an ingest job 5 MB.
    limits = {"max_upload_bytes": 20_000, "max_image_bytes": 20_000, "max_job_upload_bytes": 5_000_000}
    services = make_services(tiny_embedder, **limits)
    with TestClient(create_app(services.settings, services)) as test_client:
        test_client.services = services
        authorize(test_client, services)
        yield test_client


def chunks(total: int, size: int = 8192):
    """A body sent without Content-Length (chunked), as a streaming client sends it."""
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def test_a_catalogue_zip_far_over_the_search_cap_is_accepted_as_a_job(client, catalogue):
    archive = catalogue_zip(catalogue)
    assert 20_000 * 5 < len(archive) < 5_000_000
    response = client.post("/api/v1/ingest-jobs", files={"file": ("c.zip", archive, "application/zip")})
    assert response.status_code == 202, response.text


def test_search_and_image_uploads_keep_their_own_cap(client):
    body = b"x" * 200_000  # under the job cap, over the search cap
    for path in ("/api/v1/search", "/api/v1/products/P1/images", "/api/v1/ingest-jobsX"):
        response = client.post(path, content=body, headers={"content-type": "application/octet-stream"})
        assert response.status_code == 413, path
        assert "20,000 + 65,536" not in response.json()["detail"]
        assert "85,536-byte limit" in response.json()["detail"]


def test_a_job_over_its_cap_is_refused_before_it_is_read(client):
    response = client.post(
        "/api/v1/ingest-jobs", content=b"x" * 6_000_000, headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 413 and "5,065,536-byte limit" in response.json()["detail"]
    assert list(client.services.settings.jobs_dir.iterdir()) == []


@pytest.mark.parametrize(("path", "size"), [("/api/v1/search", 200_000), ("/api/v1/ingest-jobs", 6_000_000)])
def test_a_body_without_declared_length_is_cut_off_at_the_cap(client, path, size):
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    response = client.post(path, content=chunks(size), headers=headers)
    assert response.status_code == 413
    assert response.json()["detail"].startswith("request body is larger than the")
    assert list(client.services.settings.jobs_dir.iterdir()) == []


def test_a_body_without_declared_length_under_the_cap_goes_through(client):
    boundary = "xyz"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\nmug\r\n--{boundary}--\r\n').encode()

    def stream():
        yield body[:10]
        yield body[10:]

    response = client.post(
        "/api/v1/search", content=stream(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 200, response.text
