"""What an operator relies on: API docs served offline, /metrics, /readyz, request ids and JSON logs."""

import io
import json
import logging
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import authorize, jpeg_bytes

from app.core import logs
from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.main import create_app


@pytest.fixture
def client(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder, anonymous_search=True)
    services.ingest.ingest_manifest(catalogue)
    with TestClient(create_app(services.settings, services)) as test_client:
        test_client.services = services
        yield test_client


@pytest.fixture
def json_logs():
    """The server's JSON log configuration, writing into a buffer (conftest's root_logging_restored undoes it)."""
    logs.configure("json")
    buffer = io.StringIO()
    logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]


def photo() -> bytes:
    return jpeg_bytes(render_product(Design(seed=3, palette=factory_palette(3)), size=200))


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", ["/static-docs/swagger-ui-bundle.js", "/static-docs/swagger-ui.css"]),
        ("/redoc", ["/static-docs/redoc.standalone.js"]),
    ],
)
def test_api_docs_load_every_asset_from_this_server(client, page, assets):
    html = client.get(page)
    assert html.status_code == 200
    external = re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", html.text)
    assert external == []  # a browser offline (or behind a strict proxy) loads nothing from a CDN
    for asset in assets:
        assert asset in html.text
        served = client.get(asset)
        assert served.status_code == 200 and len(served.content) > 10_000
    csp = html.headers["content-security-policy"]
    assert "cdn" not in csp and "'self'" in csp


def test_metrics_need_an_admin_key_and_count_requests_searches_and_the_index(client):
    assert client.get("/metrics").status_code == 401
    authorize(client, client.services, role="search")
    assert client.get("/metrics").status_code == 403
    authorize(client, client.services, role="admin")
    searched = client.post("/api/v1/search", files={"image": ("p.jpg", photo(), "image/jpeg")})
    assert searched.status_code == 200
    assert client.get("/api/v1/factories/NOPE").status_code == 404
    client.post("/api/v1/search", content=b"x" * 10, headers={"content-type": "text/plain"})
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert 'sourcelens_http_requests_total{method="POST",route="/api/v1/search",status="200"} 1.0' in text
    # By route template: the raw path's id never becomes a label.
    assert 'route="/api/v1/factories/{factory_id}",status="404"} 1.0' in text and "NOPE" not in text
    assert re.search(r'sourcelens_search_stage_seconds_count\{stage="embed"\} [1-9]', text)
    assert re.search(r"sourcelens_model_batch_images_count [1-9]", text)
    assert "sourcelens_index_vectors 28.0" in text
    assert re.search(r'sourcelens_ingest_items_total\{outcome="added"\} 28', text)
    assert "sourcelens_searches_waiting 0.0" in text


def test_metrics_can_be_public_behind_a_private_network(make_services, tiny_embedder):
    services = make_services(tiny_embedder, metrics_public=True)
    with TestClient(create_app(services.settings, services)) as open_client:
        assert open_client.get("/metrics").status_code == 200


def test_readyz_says_which_check_fails(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "model_loaded": True,
        "database": True,
        "index_in_step": True,
        "images": 28,
        "vectors": 28,
    }
    client.services.keeper.index.remove(np.array([1]))  # the index has lost a vector the database holds
    behind = client.get("/readyz")
    assert behind.status_code == 503
    assert behind.json()["index_in_step"] is False and behind.json()["vectors"] == 27
    assert client.get("/healthz").status_code == 200  # alive all the same: not a reason to restart


def test_readyz_reports_an_unreachable_database(make_services, tiny_embedder, empty_postgres_url):
    from sqlalchemy import create_engine, make_url, text

    services = make_services(tiny_embedder, database_url=empty_postgres_url)
    with TestClient(create_app(services.settings, services)) as pg_client:
        assert pg_client.get("/readyz").json()["database"] is True
        admin = create_engine(make_url(empty_postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:  # the database goes away under the running service
            name = make_url(empty_postgres_url).database
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        down = pg_client.get("/readyz")
        assert down.status_code == 503 and down.json()["database"] is False and down.json()["ready"] is False
        assert pg_client.get("/healthz").status_code == 200


def test_a_request_id_is_echoed_or_made_and_carried_by_the_log_line(client, json_logs):
    given = client.get("/healthz", headers={"X-Request-ID": "lb-1234.abc"})
    assert given.headers["x-request-id"] == "lb-1234.abc"
    made = client.get("/healthz", headers={"X-Request-ID": "no spaces <or> markup"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    lines = json_logs()
    access = [line for line in lines if line["logger"] == "sourcelens.requests"]
    assert [line["request_id"] for line in access] == ["lb-1234.abc", made.headers["x-request-id"]]
    assert access[0]["message"].startswith("GET /healthz 200") and access[0]["status"] == 200
    assert {"time", "level", "duration_ms"} <= access[0].keys()


def test_logs_never_carry_keys_or_image_bytes(client, json_logs):
    key = authorize(client, client.services, role="admin")
    data = photo()
    assert client.post("/api/v1/search", files={"image": ("p.jpg", data, "image/jpeg")}).status_code == 200
    assert client.get("/api/v1/factories", headers={"X-API-Key": key}).status_code == 200
    output = json.dumps(json_logs())
    assert key not in output and key[4:20] not in output
    assert data[100:140].hex() not in output and "JFIF" not in output
