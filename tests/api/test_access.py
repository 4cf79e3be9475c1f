"""Every route declares who may call it, and every role is tried on every route: a caller the policy refuses
gets 401 or 403 and changes nothing in the database or the index; a factory key changes only its own
factories and sees only its own jobs. The routes come from the app's own route table, so a new route without
a policy, or without an example request here, fails this test."""

import hashlib
import json
from dataclasses import dataclass

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from helpers import jpeg_bytes
from sqlalchemy import text

from app.api.security import Policy
from app.catalog.types import NewFactory, NewProduct
from app.core.access import Principal, Role
from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.main import create_app

ADMIN = Principal.system()
MINE = ("A", "A2")  # the factory key's factories; B belongs to someone else
PAGES = {"/static", "/static-docs", "/openapi.json"}  # not API routes: public files and the API's description
PHOTO = jpeg_bytes(render_product(Design(seed=11, palette=factory_palette(2)), size=256))


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # the route's path with its parameters filled in
    other: bool = False  # aimed at factory B's resources
    json: dict | None = None
    files: dict | None = None
    data: dict | None = None


def calls(ids: dict[str, object]) -> dict[tuple[str, str], list[Call]]:
    """Example requests per route (method, path template): reads first, then writes, then deletes."""
    photo = {"image": ("p.jpg", PHOTO, "image/jpeg")}
    csv = b"factory_id,product_id,image\nA,PX,http://127.0.0.1:9/x.jpg\n"
    return {
        ("GET", "/healthz"): [Call("GET", "/healthz")],
        ("GET", "/"): [Call("GET", "/")],
        ("GET", "/docs"): [Call("GET", "/docs")],
        ("GET", "/portal"): [Call("GET", "/portal")],
        ("GET", "/redoc"): [Call("GET", "/redoc")],
        ("GET", "/readyz"): [Call("GET", "/readyz")],
        ("GET", "/metrics"): [Call("GET", "/metrics")],
        ("POST", "/api/v1/search"): [Call("POST", "/api/v1/search", files=photo, data={"include_weak": "true"})],
        ("GET", "/api/v1/calibration"): [Call("GET", "/api/v1/calibration")],
        ("GET", "/api/v1/facets"): [Call("GET", "/api/v1/facets")],
        ("GET", "/api/v1/factories/{factory_id}/search-counts"): [
            Call("GET", "/api/v1/factories/A/search-counts"),
            Call("GET", "/api/v1/factories/B/search-counts", other=True),
        ],
        ("GET", "/api/v1/query-jobs"): [Call("GET", "/api/v1/query-jobs")],
        ("GET", "/api/v1/saved-searches"): [Call("GET", "/api/v1/saved-searches")],
        ("POST", "/api/v1/saved-searches"): [Call("POST", "/api/v1/saved-searches", files=photo, data={"name": "mug"})],
        ("GET", "/api/v1/saved-searches/{saved_id}"): [Call("GET", "/api/v1/saved-searches/999")],
        ("GET", "/api/v1/saved-searches/{saved_id}/matches"): [Call("GET", "/api/v1/saved-searches/999/matches")],
        ("DELETE", "/api/v1/saved-searches/{saved_id}"): [Call("DELETE", "/api/v1/saved-searches/999")],
        ("POST", "/api/v1/query-jobs"): [
            Call(
                "POST", "/api/v1/query-jobs", files={"file": ("q.csv", b"url\nhttp://127.0.0.1:9/x.jpg\n", "text/csv")}
            )
        ],
        ("GET", "/api/v1/query-jobs/{job_id}"): [Call("GET", "/api/v1/query-jobs/nosuchjob")],
        ("GET", "/api/v1/query-jobs/{job_id}/results"): [Call("GET", "/api/v1/query-jobs/nosuchjob/results")],
        ("DELETE", "/api/v1/query-jobs/{job_id}"): [Call("DELETE", "/api/v1/query-jobs/nosuchjob")],
        ("POST", "/api/v1/subjects"): [Call("POST", "/api/v1/subjects", files=photo)],
        ("GET", "/api/v1/images/{image_id}/similar"): [Call("GET", f"/api/v1/images/{ids['IA1']}/similar")],
        ("GET", "/api/v1/factories"): [Call("GET", "/api/v1/factories")],
        ("GET", "/api/v1/factories/{factory_id}"): [Call("GET", "/api/v1/factories/A")],
        ("GET", "/api/v1/products"): [Call("GET", "/api/v1/products")],
        ("GET", "/api/v1/products/{product_id}"): [Call("GET", "/api/v1/products/PA1")],
        ("GET", "/api/v1/products/{product_id}/images"): [Call("GET", "/api/v1/products/PA1/images")],
        ("GET", "/api/v1/images/{image_id}"): [Call("GET", f"/api/v1/images/{ids['IA1']}")],
        ("GET", "/api/v1/images/{image_id}/file"): [Call("GET", f"/api/v1/images/{ids['IA1']}/file")],
        ("GET", "/api/v1/ingest-jobs"): [Call("GET", "/api/v1/ingest-jobs")],
        ("GET", "/api/v1/ingest-jobs/{job_id}"): [
            Call("GET", f"/api/v1/ingest-jobs/{ids['job_a']}"),
            Call("GET", f"/api/v1/ingest-jobs/{ids['job_b']}", other=True),
        ],
        ("GET", "/api/v1/keys"): [Call("GET", "/api/v1/keys")],
        ("POST", "/api/v1/factories"): [
            Call("POST", "/api/v1/factories", json={"id": "A2", "name": "Second"}),
            Call("POST", "/api/v1/factories", json={"id": "C", "name": "Not mine"}, other=True),
        ],
        ("PATCH", "/api/v1/factories/{factory_id}"): [
            Call("PATCH", "/api/v1/factories/A", json={"name": "Renamed"}),
            Call("PATCH", "/api/v1/factories/B", json={"name": "Taken over"}, other=True),
        ],
        ("POST", "/api/v1/products"): [
            Call("POST", "/api/v1/products", json={"id": "PA9", "factory_id": "A", "title": "New"}),
            Call("POST", "/api/v1/products", json={"id": "PB9", "factory_id": "B", "title": "x"}, other=True),
        ],
        ("PATCH", "/api/v1/products/{product_id}"): [
            Call("PATCH", "/api/v1/products/PA1", json={"price": 9.5}),
            Call("PATCH", "/api/v1/products/PB1", json={"price": 0.01}, other=True),
        ],
        ("POST", "/api/v1/products/{product_id}/images"): [
            Call("POST", "/api/v1/products/PA2/images", files=photo),
            Call("POST", "/api/v1/products/PB1/images", files=photo, other=True),
        ],
        ("GET", "/api/v1/ingest-jobs/{job_id}/errors"): [
            Call("GET", f"/api/v1/ingest-jobs/{ids['job_a']}/errors"),
            Call("GET", f"/api/v1/ingest-jobs/{ids['job_b']}/errors", other=True),
        ],
        ("POST", "/api/v1/ingest-jobs"): [
            Call("POST", "/api/v1/ingest-jobs", files={"file": ("urls.csv", csv, "text/csv")}),
        ],
        ("POST", "/api/v1/keys"): [Call("POST", "/api/v1/keys", json={"name": "new", "role": "search"})],
        ("DELETE", "/api/v1/keys/{key_id}"): [Call("DELETE", f"/api/v1/keys/{ids['spare_key']}")],
        ("DELETE", "/api/v1/ingest-jobs/{job_id}"): [
            Call("DELETE", f"/api/v1/ingest-jobs/{ids['job_a']}"),
            Call("DELETE", f"/api/v1/ingest-jobs/{ids['job_b']}", other=True),
        ],
        ("DELETE", "/api/v1/images/{image_id}"): [
            Call("DELETE", f"/api/v1/images/{ids['IA1']}"),
            Call("DELETE", f"/api/v1/images/{ids['IB1']}", other=True),
        ],
        ("DELETE", "/api/v1/products/{product_id}"): [
            Call("DELETE", "/api/v1/products/PA2"),
            Call("DELETE", "/api/v1/products/PB1", other=True),
        ],
        ("DELETE", "/api/v1/factories/{factory_id}"): [
            Call("DELETE", "/api/v1/factories/A2"),
            Call("DELETE", "/api/v1/factories/B", other=True),
        ],
    }


def intended(method: str, path: str) -> Policy:
    """Who each route is for: the page and health for anyone; search and catalogue reads for any key (and for
    anonymous callers where that is switched on), batch queries and saved searches too (their services then
    ask for a key); catalogue writes and ingest jobs for admin and factory keys; keys for admins."""
    if path in ("/", "/portal", "/healthz", "/readyz", "/docs", "/redoc"):
        return Policy.PUBLIC
    if path == "/metrics":
        return Policy.METRICS
    if path.startswith("/api/v1/keys"):
        return Policy.ADMIN
    if path.startswith("/api/v1/ingest-jobs") or path.endswith("/search-counts"):  # a factory's own figures
        return Policy.WRITE
    if method == "GET" or path in ("/api/v1/search", "/api/v1/subjects"):
        return Policy.READ
    if path.startswith(("/api/v1/query-jobs", "/api/v1/saved-searches")):
        return Policy.READ
    return Policy.WRITE


def policy_of(route: APIRoute) -> Policy | None:
    found = [getattr(dep.call, "policy", None) for dep in _walk(route.dependant)]
    policies = {p for p in found if p is not None}
    assert len(policies) <= 1, f"{route.path} declares several policies: {policies}"
    return policies.pop() if policies else None


def _walk(dependant):
    for dep in dependant.dependencies:
        yield dep
        yield from _walk(dep)


def seed(services) -> dict[str, object]:
    catalog, ids = services.catalog, {}
    for factory_id in ("A", "B"):
        catalog.create_factory(NewFactory(id=factory_id, name=factory_id), ADMIN)
    for product_id, factory_id in (("PA1", "A"), ("PA2", "A"), ("PB1", "B")):
        catalog.create_product(NewProduct(id=product_id, factory_id=factory_id, title=product_id), ADMIN)
    for name, product_id, seed_ in (("IA1", "PA1", 1), ("IB1", "PB1", 2)):
        photo = jpeg_bytes(render_product(Design(seed=seed_, palette=factory_palette(seed_)), size=256))
        ids[name] = catalog.add_image(product_id, photo, "seed", ADMIN)[0].id
    mine = Principal(Role.FACTORY, frozenset(MINE), key_id=999)
    ids["job_a"] = services.jobs.create([], source="a", work_dir="/tmp", confined=True, owner=mine)
    ids["job_b"] = services.jobs.create([], source="b", work_dir="/tmp", confined=True)
    ids["spare_key"] = services.keys.create("spare", "search").info.id
    return ids


def state(services) -> str:
    """A fingerprint of everything a request could change: every table's rows and the index's ids (but a key's
    last_used_at, which any authenticated request moves on)."""
    queries = {
        name: f"SELECT * FROM {name}" for name in ("factories", "products", "images", "ingest_jobs", "ingest_items")
    }
    queries["api_keys"] = "SELECT id, name, role, factory_ids, prefix, token_hash, created_at, revoked_at FROM api_keys"
    with services.engine.connect() as connection:
        tables = {name: sorted(map(str, connection.execute(text(q)).all())) for name, q in queries.items()}
    tables["index"] = sorted(services.index.ids().tolist())
    return hashlib.sha256(json.dumps(tables, default=str).encode()).hexdigest()


def api_routes(app) -> list[APIRoute]:
    """Every route of the app, those of included routers too, as the app serves them."""
    return [ctx.route for ctx in iter_route_contexts(app.routes) if isinstance(ctx.route, APIRoute)]


def test_every_api_route_declares_a_policy(make_services, tiny_embedder):
    app = create_app(services=make_services(tiny_embedder))
    routes = api_routes(app)
    assert len(routes) >= 20
    assert [f"{sorted(r.methods)} {r.path}" for r in routes if policy_of(r) is None] == []
    wrong = [(r.path, m, policy_of(r)) for r in routes for m in r.methods if policy_of(r) != intended(m, r.path)]
    assert wrong == []
    others = {ctx.path for ctx in iter_route_contexts(app.routes) if not isinstance(ctx.route, APIRoute)}
    assert others <= PAGES, f"routes outside the API with no policy: {others - PAGES}"


ROLES = ["anonymous", "anonymous-open", "search", "factory", "admin"]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_on_each_route(make_services, tiny_embedder, role, backend, monkeypatch):
    services = make_services(tiny_embedder, anonymous_search=role == "anonymous-open", **backend)
    monkeypatch.setattr(services.runner, "start", lambda **_: None)  # jobs stay as they are while we look
    ids = seed(services)
    client = TestClient(create_app(services=services))
    if role in ("search", "factory", "admin"):
        factories = MINE if role == "factory" else ()
        client.headers["Authorization"] = "Bearer " + services.keys.create(role, role, factories).token
    caller = {
        "anonymous": Principal(None),
        "anonymous-open": Principal(None),
        "search": Principal(Role.SEARCH),
        "factory": Principal(Role.FACTORY, frozenset(MINE)),
        "admin": ADMIN,
    }[role]
    examples = calls(ids)
    routes = {(method, r.path): policy_of(r) for r in api_routes(client.app) for method in r.methods}
    assert set(routes) == set(examples), f"routes without an example request: {set(routes) ^ set(examples)}"
    outcomes = []
    with client:
        for (method, template), requests in examples.items():
            policy = routes[(method, template)]
            for call in requests:
                before = state(services)
                response = client.request(call.method, call.path, json=call.json, files=call.files, data=call.data)
                admitted = policy.admits(caller, role == "anonymous-open")
                mine_only = role == "factory" and call.other
                outcomes.append((call.method, call.path, response.status_code))
                hidden = mine_only and template.startswith("/api/v1/ingest-jobs/")  # another's job: not shown
                # Batch query jobs: open to any key, but not to anonymous callers even where search is open;
                # the example ids name no job, which every role is told is not there.
                keyless_batch = (
                    template in ("/api/v1/query-jobs", "/api/v1/saved-searches")
                    and method == "POST"
                    and caller.role is None
                )
                no_such_job = template.startswith(("/api/v1/query-jobs/", "/api/v1/saved-searches/"))
                if admitted and keyless_batch:
                    assert response.status_code == 401 and "API key" in response.json()["detail"]
                elif admitted and no_such_job:
                    assert response.status_code == 404, (role, call, response.text)
                elif not admitted or (mine_only and not hidden and (method != "GET" or "search-counts" in template)):
                    expected = {401} if caller.role is None and policy != Policy.PUBLIC else {403}
                    assert response.status_code in expected, (role, call, response.text)
                    assert response.json()["detail"]
                    assert state(services) == before, f"{role} {call} changed something"
                elif hidden:  # another factory's job: not even its existence is shown
                    assert response.status_code == 404, (role, call, response.text)
                    assert state(services) == before
                else:
                    assert 200 <= response.status_code < 300, (role, call, response.status_code, response.text)
    assert outcomes


def test_a_factory_key_lists_only_its_own_jobs(make_services, tiny_embedder, backend):
    services = make_services(tiny_embedder, job_poll_s=60, **backend)
    ids = seed(services)
    client = TestClient(create_app(services=services))
    with client:
        client.headers["Authorization"] = "Bearer " + services.keys.create("f", "factory", MINE).token
        assert [job["id"] for job in client.get("/api/v1/ingest-jobs").json()] == [ids["job_a"]]
        client.headers["Authorization"] = "Bearer " + services.keys.create("a", "admin").token
        assert {job["id"] for job in client.get("/api/v1/ingest-jobs").json()} == {ids["job_a"], ids["job_b"]}


def test_a_refusal_says_what_is_missing(make_services, tiny_embedder):
    """401 tells an anonymous caller how to send a key; 403 tells a keyed caller which key it is. The key may come
    as a bearer token or as X-API-Key."""
    services = make_services(tiny_embedder)
    token = services.keys.create("reader", "search").token
    with TestClient(create_app(services=services)) as client:
        anonymous = client.post("/api/v1/factories", json={"id": "Z", "name": "Z"})
        assert anonymous.status_code == 401
        assert anonymous.json()["detail"] == "an API key is required: send Authorization: Bearer <key>"
        for headers in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": token}):
            refused = client.post("/api/v1/factories", json={"id": "Z", "name": "Z"}, headers=headers)
            assert refused.status_code == 403 and refused.json()["detail"] == "a search key may not do this"
