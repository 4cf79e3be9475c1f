"""Request-body limits: each path gets its own cap, declared or not, before anything is parsed or stored."""

import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from helpers import authorize
from jobtools import catalogue_zip

from app.api.middleware import AdmitSearches, BodySizeLimit, BodyTooLarge, send_json
from app.main import create_app
from embeddings import ModelScheduler
from embeddings.scheduler import SchedulerPolicy, Ticket


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


# The middleware itself, driven with a tiny ASGI app and hand-made receive/send: exact answers, fast.

CAP = 1_000
CAP_DETAIL = b'{"detail": "request body is larger than the 1,000-byte limit"}'
LIMITS = {"": CAP, "/api/v1/ingest-jobs": 5_000, "/api/v1/ingest-jobs/big": 9_000}


def http_scope(path: str = "/api/v1/search", method: str = "POST", length: int | bytes | None = None) -> dict:
    headers = [(b"content-type", b"application/octet-stream")]
    if length is not None:
        headers.append((b"content-length", length if isinstance(length, bytes) else str(length).encode()))
    return {"type": "http", "method": method, "path": path, "headers": headers}


class Inner:
    """The app behind the middleware: reads the whole body, notes what it saw, answers 200."""

    def __init__(self, scheduler: ModelScheduler | None = None, then=None) -> None:
        self.scheduler = scheduler
        self.then = then  # called after the body is read, before the answer (to raise, say)
        self.calls = 0
        self.body = b""
        self.ticket = "unset"
        self.waiting = None

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        self.ticket = scope.get("state", {}).get("ticket", "absent")
        if self.scheduler is not None:
            self.waiting = self.scheduler.stats.waiting
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionResetError("client went away")
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if self.then is not None:
            self.then()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(middleware, scope: dict, parts: list[bytes] = (), disconnect: bool = False) -> list[dict]:
    """Run one request through `middleware`, its body in `parts`; the messages sent back."""
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]
    if not messages:
        messages = [{"type": "http.request", "body": b"", "more_body": False}]
    if disconnect:
        messages = [{**messages[0], "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


def answer(sent: list[dict]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start, body = sent
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    assert not body.get("more_body", False)
    return start["status"], start["headers"], body["body"]


def test_send_json_writes_a_complete_json_response():
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(send_json(send, 418, "tea, not coffee", [(b"x-extra", b"1")]))
    status, headers, body = answer(sent)
    assert status == 418
    assert body == b'{"detail": "tea, not coffee"}' and json.loads(body) == {"detail": "tea, not coffee"}
    assert headers == [(b"content-type", b"application/json"), (b"content-length", b"29"), (b"x-extra", b"1")]
    sent.clear()
    asyncio.run(send_json(send, 400, "plain"))
    assert answer(sent)[1] == [(b"content-type", b"application/json"), (b"content-length", b"19")]


def test_a_declared_body_over_the_cap_is_refused_before_the_app_or_the_body_is_touched():
    rejected: list[str] = []
    inner = Inner()
    read: list[str] = []

    async def receive():
        read.append("read")
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(BodySizeLimit(inner, LIMITS, rejected.append)(http_scope(length=CAP + 1), receive, send))
    assert answer(sent) == (
        413,
        [(b"content-type", b"application/json"), (b"content-length", str(len(CAP_DETAIL)).encode())],
        CAP_DETAIL,
    )
    assert rejected == ["body_too_large"] and inner.calls == 0 and read == []


def test_a_declared_body_exactly_at_the_cap_goes_through():
    rejected: list[str] = []
    inner = Inner()
    sent = call(BodySizeLimit(inner, LIMITS, rejected.append), http_scope(length=CAP), [b"x" * CAP])
    assert answer(sent)[0] == 200 and inner.body == b"x" * CAP and rejected == []


@pytest.mark.parametrize(
    ("path", "cap"),
    [
        ("/api/v1/search", CAP),
        ("/", CAP),
        ("/api/v1/ingest-jobs", 5_000),  # equals the prefix
        ("/api/v1/ingest-jobs/", 5_000),
        ("/api/v1/ingest-jobs/J1/status", 5_000),  # continues it with a "/"
        ("/api/v1/ingest-jobsX", CAP),  # merely starts with it
        ("/api/v1/ingest-jobs/big", 9_000),  # the longest prefix wins
        ("/api/v1/ingest-jobs/big/part", 9_000),
        ("/api/v1/ingest-jobs/bigger", 5_000),
    ],
)
def test_each_path_gets_the_cap_of_its_longest_prefix(path, cap):
    for limits in (LIMITS, dict(reversed(LIMITS.items()))):  # whatever order they are given in
        over = answer(call(BodySizeLimit(Inner(), limits), http_scope(path, length=cap + 1)))
        assert over[0] == 413 and json.loads(over[2]) == {
            "detail": f"request body is larger than the {cap:,}-byte limit"
        }
        inner = Inner()
        assert answer(call(BodySizeLimit(inner, limits), http_scope(path, length=cap), [b"x" * cap]))[0] == 200
        assert inner.calls == 1


def test_a_prefix_written_with_a_trailing_slash_covers_the_paths_under_it():
    limits = {"": CAP, "/files/": 10}
    assert answer(call(BodySizeLimit(Inner(), limits), http_scope("/files/a", length=11)))[0] == 413
    assert answer(call(BodySizeLimit(Inner(), limits), http_scope("/filesX", length=11), [b"x" * 11]))[0] == 200


@pytest.mark.parametrize(
    ("path", "capped"), [("/inboX/a", True), ("/inboX", True), ("/inbo/a", False), ("/inbo", False)]
)
def test_only_slashes_are_trimmed_from_the_end_of_a_prefix(path, capped):
    limits = {"": CAP, "/inboX": 10}
    status = answer(call(BodySizeLimit(Inner(), limits), http_scope(path, length=11), [b"x" * 11]))[0]
    assert status == (413 if capped else 200)


def test_an_undeclared_body_exactly_at_the_cap_goes_through_in_chunks():
    inner = Inner()
    parts = [b"a" * 400, b"b" * 400, b"c" * 200]
    assert answer(call(BodySizeLimit(inner, LIMITS), http_scope(), parts))[0] == 200
    assert inner.body == b"".join(parts)


@pytest.mark.parametrize("length", [None, b"", b"abc", b"10"])  # none, blank, not a number, a lie
def test_an_undeclared_body_whose_chunks_add_up_past_the_cap_is_cut_off(length):
    rejected: list[str] = []
    inner = Inner()
    parts = [b"a" * 400, b"b" * 400, b"c" * 201]  # each chunk well under the cap, the sum one byte over
    with pytest.raises(BodyTooLarge) as refused:
        call(BodySizeLimit(inner, LIMITS, rejected.append), http_scope(length=length), parts)
    assert refused.value.status_code == 413
    assert refused.value.detail == "request body is larger than the 1,000-byte limit"
    assert inner.body == b"a" * 400 + b"b" * 400  # the app never saw the chunk that went over


def test_an_undeclared_body_cut_off_at_the_cap_is_counted_as_rejected():
    rejected: list[str] = []
    with pytest.raises(BodyTooLarge):
        call(BodySizeLimit(Inner(), LIMITS, rejected.append), http_scope(), [b"a" * 600, b"b" * 600])
    assert rejected == ["body_too_large"]


def test_body_limit_passes_other_scopes_through_untouched():
    inner = Inner()
    received = []

    async def receive():
        received.append("read")
        return {"type": "lifespan.startup"}

    async def send(message):
        pass

    asyncio.run(BodySizeLimit(inner, {"/x": 1})({"type": "lifespan"}, receive, send))  # no "" prefix: no lookup
    assert inner.calls == 1


def scheduler_with(max_waiting: int = 3, max_batch: int = 2) -> ModelScheduler:
    return ModelScheduler(SchedulerPolicy(cores=2, max_batch=max_batch, max_waiting=max_waiting))


def test_a_search_holds_a_place_while_it_runs_and_gives_it_back_after():
    scheduler = scheduler_with()
    inner = Inner(scheduler)
    rejected: list[str] = []
    sent = call(AdmitSearches(inner, scheduler, "/api/v1/search", rejected.append), http_scope(), [b"photo"])
    assert answer(sent)[0] == 200 and inner.body == b"photo"
    assert isinstance(inner.ticket, Ticket) and inner.waiting == 1
    assert scheduler.stats.waiting == 0 and rejected == []


def test_the_ticket_joins_any_state_already_in_the_scope():
    scheduler = scheduler_with()
    inner = Inner(scheduler)
    scope = {**http_scope(), "state": {"kept": 1}}
    call(AdmitSearches(inner, scheduler, "/api/v1/search"), scope, [b"photo"])
    assert scope["state"]["kept"] == 1 and isinstance(scope["state"]["ticket"], Ticket)
    assert scope["state"]["ticket"] is inner.ticket


@pytest.mark.parametrize(
    "scope",
    [
        http_scope(method="GET"),
        http_scope(method="PUT"),
        http_scope("/api/v1/search/"),
        http_scope("/api/v1/searches"),
        http_scope("/api/v1/products"),
        {"type": "websocket", "path": "/api/v1/search", "headers": []},
    ],
)
def test_only_a_post_to_the_search_path_is_admitted(scope):
    scheduler = scheduler_with(max_waiting=1)
    held = scheduler.admit()  # full: a search would be refused
    inner = Inner(scheduler)
    rejected: list[str] = []
    sent = call(AdmitSearches(inner, scheduler, "/api/v1/search", rejected.append), scope)
    assert inner.calls == 1 and inner.ticket == "absent" and inner.waiting == 1 and rejected == []
    if scope["type"] == "http":
        assert answer(sent)[0] == 200
    held.release()


def test_too_many_waiting_searches_get_503_with_retry_after():
    scheduler = scheduler_with(max_waiting=3, max_batch=2)
    held = [scheduler.admit() for _ in range(3)]
    inner = Inner(scheduler)
    rejected: list[str] = []
    sent = call(AdmitSearches(inner, scheduler, "/api/v1/search", rejected.append), http_scope(), [b"photo"])
    detail = b'{"detail": "3 searches are waiting for the model; retry in 2s"}'
    assert answer(sent) == (
        503,
        [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(detail)).encode()),
            (b"retry-after", b"2"),
        ],
        detail,
    )
    assert inner.calls == 0 and rejected == ["searches_waiting"] and scheduler.stats.waiting == 3
    held[0].release()  # a place frees up: the next search is admitted
    assert answer(call(AdmitSearches(inner, scheduler, "/api/v1/search"), http_scope(), [b"photo"]))[0] == 200
    assert inner.waiting == 3 and scheduler.stats.waiting == 2


def test_a_search_whose_client_goes_away_gives_its_place_back():
    scheduler = scheduler_with()
    inner = Inner(scheduler)
    with pytest.raises(ConnectionResetError):
        call(AdmitSearches(inner, scheduler, "/api/v1/search"), http_scope(), [b"pho"], disconnect=True)
    assert inner.waiting == 1 and isinstance(inner.ticket, Ticket) and scheduler.stats.waiting == 0


def test_a_search_that_fails_gives_its_place_back():
    scheduler = scheduler_with()

    def fail():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        call(AdmitSearches(Inner(scheduler, fail), scheduler, "/api/v1/search"), http_scope(), [b"photo"])
    assert scheduler.stats.waiting == 0
