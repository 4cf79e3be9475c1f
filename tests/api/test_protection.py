"""What protects the service as a whole: keys and their errors, rate limits, the cap on searches waiting for
the model, trusted hosts, cross-origin writes, CORS, and security headers."""

import re

import pytest
from fastapi.testclient import TestClient
from helpers import jpeg_bytes

from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.main import WEB_DIR, create_app

PHOTO = jpeg_bytes(render_product(Design(seed=3, palette=factory_palette(3)), size=128))


@pytest.fixture
def app_for(make_services, tiny_embedder):
    clients = []

    def start(**overrides) -> TestClient:
        services = make_services(tiny_embedder, **overrides)
        client = TestClient(create_app(services=services))
        client.__enter__()
        client.services = services
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def search(client: TestClient, **headers: str):
    files = {"image": ("q.jpg", PHOTO, "image/jpeg")}
    return client.post("/api/v1/search", files=files, headers=headers)


def test_keys_by_either_header_and_clear_refusals(app_for):
    client = app_for()
    token = client.services.keys.create("tool", "search").token
    missing = client.get("/api/v1/factories")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "API key is required" in missing.json()["detail"]
    assert client.get("/api/v1/factories", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/v1/factories", headers={"X-API-Key": token}).status_code == 200
    assert client.get("/api/v1/factories", headers={"Authorization": f"Basic {token}"}).status_code == 401
    unknown = client.get("/api/v1/factories", headers={"X-API-Key": "slk_nope"})
    assert unknown.status_code == 401 and "unknown or revoked" in unknown.json()["detail"]
    forbidden = client.post("/api/v1/factories", json={"id": "F1", "name": "x"}, headers={"X-API-Key": token})
    assert forbidden.status_code == 403 and forbidden.json()["detail"] == "a search key may not do this"
    client.services.keys.revoke(client.services.keys.list()[0].id)
    assert client.get("/api/v1/factories", headers={"X-API-Key": token}).status_code == 401
    assert client.get("/healthz").status_code == 200  # health needs no key


def test_admins_manage_keys_through_the_api(app_for):
    client = app_for()
    admin = {"X-API-Key": client.services.keys.create("ops", "admin").token}
    created = client.post(
        "/api/v1/keys", json={"name": "acme", "role": "factory", "factory_ids": ["F1"]}, headers=admin
    )
    assert created.status_code == 201 and created.json()["token"].startswith("slk_")
    listed = client.get("/api/v1/keys", headers=admin).json()
    assert [k["name"] for k in listed] == ["ops", "acme"] and all("token" not in k for k in listed)
    factory = {"X-API-Key": created.json()["token"]}
    assert client.post("/api/v1/factories", json={"id": "F1", "name": "Acme"}, headers=factory).status_code == 201
    assert client.post("/api/v1/factories", json={"id": "F2", "name": "Not"}, headers=factory).status_code == 403
    revoked = client.delete(f"/api/v1/keys/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.get("/api/v1/factories", headers=factory).status_code == 401
    bad = client.post("/api/v1/keys", json={"name": "x", "role": "factory"}, headers=admin)
    assert bad.status_code == 422 and "needs the ids" in bad.json()["detail"]
    assert client.post("/api/v1/keys", json={"name": "x", "role": "root"}, headers=admin).status_code == 422


def test_the_openapi_document_declares_both_key_schemes(app_for):
    schemes = app_for().get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["type"] == "http" and schemes["HTTPBearer"]["scheme"] == "bearer"
    assert (schemes["APIKeyHeader"]["in"], schemes["APIKeyHeader"]["name"]) == ("header", "X-API-Key")


def test_anonymous_search_opens_reads_never_writes(app_for):
    client = app_for(anonymous_search=True)
    assert search(client).status_code == 200
    assert client.get("/api/v1/factories").status_code == 200
    refused = client.post("/api/v1/factories", json={"id": "F1", "name": "x"})
    assert refused.status_code == 401
    assert client.get("/api/v1/ingest-jobs").status_code == 401


def test_rate_limits_answer_429_with_retry_after(app_for):
    client = app_for(anonymous_search=True, rate_limit_per_address="5/minute", rate_limit_per_key="3/minute")
    token = client.services.keys.create("tool", "search").token
    statuses = [client.get("/api/v1/factories", headers={"X-API-Key": token}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/api/v1/factories", headers={"X-API-Key": token})
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    assert "per key" in limited.json()["detail"]
    # The address has made 5 requests: it is over its own limit now, with or without a key.
    by_address = client.get("/api/v1/factories")
    assert by_address.status_code == 429 and "per address" in by_address.json()["detail"]
    assert client.get("/healthz").status_code == 200  # not counted
    assert client.get("/").status_code == 200


def test_searches_beyond_the_queue_cap_are_told_to_come_back(app_for):
    client = app_for(anonymous_search=True, search_queue_max=2)
    waiting = [client.services.scheduler.admit() for _ in range(2)]  # two searches waiting for the model
    busy = search(client)
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
    assert "waiting for the model" in busy.json()["detail"]
    for ticket in waiting:
        ticket.release()
    assert search(client).status_code == 200


def test_only_trusted_hosts_are_answered(app_for):
    client = app_for(anonymous_search=True, allowed_hosts=["testserver", "lens.example.com"])
    assert client.get("/healthz", headers={"Host": "lens.example.com:8443"}).status_code == 200
    rebound = client.get("/api/v1/factories", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400 and "SOURCELENS_ALLOWED_HOSTS" in rebound.json()["detail"]
    assert app_for(allowed_hosts=["*"]).get("/healthz", headers={"Host": "any.example"}).status_code == 200


def test_cross_origin_writes_are_refused_unless_the_origin_is_configured(app_for):
    client = app_for(anonymous_search=True)
    token = client.services.keys.create("ops", "admin").token
    evil = {"Origin": "https://evil.example", "X-API-Key": token}
    refused = client.post("/api/v1/factories", json={"id": "F1", "name": "x"}, headers=evil)
    assert refused.status_code == 403 and "cross-origin" in refused.json()["detail"]
    assert search(client, Origin="https://evil.example").status_code == 403
    assert client.get("/api/v1/factories", headers={"Origin": "https://evil.example"}).status_code == 200
    assert "access-control-allow-origin" not in client.get("/api/v1/factories", headers=evil).headers
    same = {"Origin": "http://testserver", "X-API-Key": token}
    assert client.post("/api/v1/factories", json={"id": "F1", "name": "x"}, headers=same).status_code == 201

    shop = app_for(anonymous_search=True, cors_origins=["https://shop.example"])
    preflight = shop.options(
        "/api/v1/search",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert search(shop, Origin="https://shop.example").status_code == 200


def test_security_headers_on_the_page_and_the_api(app_for):
    client = app_for(anonymous_search=True)
    for path in ("/", "/api/v1/factories", "/healthz", "/static/js/main.js", "/api/v1/nope"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp and "unsafe-inline" not in csp
    page = (WEB_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and "style=" not in page  # nothing inline to allow
    assert "frame-ancestors 'none'" in client.get("/docs").headers["content-security-policy"]
