"""Saved searches: a photo watched for confident matches on catalogue images added later, listed once each,
delivered to a webhook (retried until it answers 2xx); per key; bad photos and webhooks refused."""

import http.server
import json
import threading

import pytest
from helpers import catalogue_image, jpeg_bytes
from PIL import Image

from app.core.access import Principal, Role
from app.core.errors import AuthenticationError, InvalidInputError, NotFoundError

SELLER = Principal(Role.SEARCH, key_id=3, name="seller")
OTHER = Principal(Role.SEARCH, key_id=4, name="other")
SYSTEM = Principal.system()


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []  # noqa: RUF012 (shared by the test and the server thread on purpose)
    status = 500

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook():
    Hook.received, Hook.status = [], 500
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def services(make_services, effnet_embedder, catalogue, hook):
    services = make_services(effnet_embedder, url_allow_hosts=[hook])
    # The catalogue less one product, which a factory adds later.
    lines = catalogue.read_text().splitlines()
    later = [line for line in lines if ",F003-P002," in line]
    (catalogue.parent / "first.csv").write_text("\n".join(line for line in lines if line not in later) + "\n")
    (catalogue.parent / "later.csv").write_text("\n".join([lines[0], *later]) + "\n")
    assert services.ingest.ingest_manifest(catalogue.parent / "first.csv").failed == 0
    services.ingest_later = catalogue.parent / "later.csv"
    return services


def test_an_image_added_later_that_matches_is_found_once_and_delivered(services, catalogue, hook):
    photo = jpeg_bytes(
        Image.open(catalogue_image(catalogue, "F003-P002-1.jpg")).rotate(8, expand=True, fillcolor="white")
    )
    saved = services.saved.create(photo, "the striped mug", f"http://{hook}/hook", SELLER)
    assert saved.matches == 0 and services.saved.check_all() == 0  # nothing new in the catalogue yet
    assert services.ingest.ingest_manifest(services.ingest_later).added >= 1
    assert services.saved.check_all() >= 1
    matches = services.saved.matches(saved.id, SELLER)
    assert matches[0].product_id == "F003-P002" and matches[0].factory_id == "F003"
    assert matches[0].match_level in ("identical", "near_duplicate") and not matches[0].delivered
    assert Hook.received and Hook.received[0]["saved_search"] == {"id": saved.id, "name": "the striped mug"}
    Hook.status = 204  # the receiver is back: the next check delivers what it missed
    services.saved.check_all()
    assert all(m.delivered for m in services.saved.matches(saved.id, SELLER))
    count = len(Hook.received)
    services.saved.check_all()
    assert len(Hook.received) == count and len(services.saved.matches(saved.id, SELLER)) == len(matches)


def test_an_image_of_another_product_is_no_match(services, catalogue):
    unrelated = catalogue_image(catalogue, "F001-P001-1.jpg").read_bytes()
    saved = services.saved.create(unrelated, "bottle", None, SELLER)
    services.ingest.ingest_manifest(services.ingest_later)
    services.saved.check_all()
    assert [m.product_id for m in services.saved.matches(saved.id, SELLER)] == []
    assert services.saved.get(saved.id, SELLER).checked_to > 0


def test_saved_searches_are_per_key_limited_and_need_a_key(services, catalogue):
    photo = catalogue_image(catalogue, "F001-P001-1.jpg").read_bytes()
    saved = services.saved.create(photo, "bottle", None, SELLER)
    with pytest.raises(NotFoundError):
        services.saved.matches(saved.id, OTHER)
    with pytest.raises(NotFoundError):
        services.saved.delete(saved.id, OTHER)
    assert [s.id for s in services.saved.recent(SELLER)] == [saved.id] and services.saved.recent(OTHER) == []
    with pytest.raises(AuthenticationError, match="API key"):
        services.saved.create(photo, "x", None, Principal(None))
    services.saved.max_per_key = 1
    with pytest.raises(InvalidInputError, match="the limit is 1"):
        services.saved.create(photo, "again", None, SELLER)
    services.saved.delete(saved.id, SELLER)
    assert services.saved.recent(SYSTEM) == []


def test_bad_photos_and_webhooks_are_refused(services, catalogue):
    photo = catalogue_image(catalogue, "F001-P001-1.jpg").read_bytes()
    with pytest.raises(InvalidInputError, match="webhook_url"):
        services.saved.create(photo, "x", "http://127.0.0.1:9/private", SELLER)  # not public, not allow-listed
    with pytest.raises(InvalidInputError, match="webhook_url"):
        services.saved.create(photo, "x", "ftp://example.com/", SELLER)
    with pytest.raises(Exception, match="image"):
        services.saved.create(b"not a photo", "x", None, SELLER)
    assert services.saved.recent(SYSTEM) == []
