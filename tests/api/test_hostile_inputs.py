"""Hostile and malformed requests get a clear 4xx and leave the catalogue as it was: non-finite and huge
numbers, deep and large JSON, odd archives, image formats that hide their size, huge manifests, searches while
images are deleted, uploads to products deleted at the same moment. On SQLite and on PostgreSQL."""

import io
import json
import struct
import threading
import zipfile

import pytest
from fastapi.testclient import TestClient
from helpers import authorize, jpeg_bytes, png_bytes
from jobtools import zip_of
from PIL import Image

from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.main import create_app

PHOTO = jpeg_bytes(render_product(Design(seed=9, palette=factory_palette(9)), size=200))


@pytest.fixture
def client(make_services, tiny_embedder, backend):
    services = make_services(tiny_embedder, max_manifest_rows=1000, **backend)
    with TestClient(create_app(services=services)) as test_client:
        test_client.services = services
        authorize(test_client, services)
        assert test_client.post("/api/v1/factories", json={"id": "F1", "name": "Acme"}).status_code == 201
        product = {"id": "P1", "factory_id": "F1", "title": "Mug", "price": 1.5, "moq": 10}
        assert test_client.post("/api/v1/products", json=product).status_code == 201
        files = {"image": ("p.jpg", PHOTO, "image/jpeg")}
        assert test_client.post("/api/v1/products/P1/images", files=files).status_code == 201
        yield test_client


def snapshot(client: TestClient) -> str:
    return json.dumps(
        [
            client.get("/api/v1/factories").json(),
            client.get("/api/v1/products").json(),
            client.get("/api/v1/ingest-jobs").json(),
            len(client.services.index),
        ],
        sort_keys=True,
    )


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


BAD_BODIES = [
    ("post", "/api/v1/products", {"id": "P2", "factory_id": "F1", "title": "x", "moq": 10**30}),
    ("post", "/api/v1/products", {"id": "P2", "factory_id": "F1", "title": "x", "moq": 2**31}),
    ("patch", "/api/v1/products/P1", {"moq": -(10**30)}),
    ("post", "/api/v1/factories", {"id": "F" + "9" * 400, "name": "x"}),
    ("post", "/api/v1/factories", {"id": "F2", "name": "x", "attributes": deep(20)}),
    ("post", "/api/v1/factories", {"id": "F2", "name": "x", "attributes": {"k": "v" * 20_000}}),
    ("patch", "/api/v1/factories/F1", {"attributes": deep(9)}),
    ("post", "/api/v1/products", {"id": "P2", "factory_id": "../F1", "title": "x"}),
    ("post", "/api/v1/keys", {"name": "x", "role": "factory", "factory_ids": ["F1"] * 101}),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_BODIES)
def test_bad_json_bodies_are_refused_and_change_nothing(client, method, path, body):
    before = snapshot(client)
    response = getattr(client, method)(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert snapshot(client) == before


@pytest.mark.parametrize("raw", [b'{"price": Infinity}', b'{"price": NaN}', b'{"price": 1e999}'])
def test_non_finite_numbers_are_refused(client, raw):
    response = client.patch("/api/v1/products/P1", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert client.get("/api/v1/products/P1").json()["price"] == 1.5


def test_json_nested_past_the_parser_is_a_client_error(client):
    raw = b'{"name": "x", "attributes": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
    response = client.patch("/api/v1/factories/F1", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["detail"]
    assert client.get("/api/v1/factories/F1").json()["name"] == "Acme"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/images/1000000000000000000000000000000",
        "/api/v1/images/-5",
        "/api/v1/images/1000000000000000000000000000000/similar",
        "/api/v1/products?offset=1000000000000000000000000000000",
        "/api/v1/factories?limit=1000000000000000000000",
        "/api/v1/keys/1000000000000000000000000000000",
    ],
)
def test_huge_and_negative_numbers_in_paths_and_queries_are_a_422(client, path):
    method = "delete" if path.startswith("/api/v1/keys") else "get"
    assert getattr(client, method)(path).status_code == 422


@pytest.mark.parametrize(
    "form",
    [
        {"bbox": "nan,0,1,1"},
        {"bbox": "inf,0,100,100"},
        {"bbox": "0,0,1e400,5"},
        {"min_score": "nan"},
        {"min_price": "inf"},
        {"max_moq": "1" + "0" * 40},
        {"top_k": "9" * 50},
        {"offset": "9" * 50},
        {"factory_attributes": json.dumps(deep(20))},
        {"factory_attributes": "[" * 5000 + "]" * 5000},
        {"factory_attributes": json.dumps({"k": "v" * 5000})},
        {"region": "x" * 300},
    ],
)
def test_search_options_out_of_range_are_a_422(client, form):
    files = {"image": ("q.jpg", PHOTO, "image/jpeg")}
    response = client.post("/api/v1/search", files=files, data=form)
    assert response.status_code == 422, response.text


def ico_of(png: bytes) -> bytes:
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def test_formats_that_hide_their_size_are_refused_before_decoding(client):
    wrapped = ico_of(png_bytes(Image.new("RGB", (20000, 20000))))  # a few KB wrapping 400 megapixels
    assert len(wrapped) < 2_000_000
    for data in (wrapped, b"icns" + b"\0" * 100):
        files = {"image": ("q.ico", data, "image/x-icon")}
        refused = client.post("/api/v1/search", files=files)
        assert refused.status_code == 422 and "accepted format" in refused.json()["detail"]
        assert client.post("/api/v1/products/P1/images", files=files).status_code == 422
    assert len(client.services.index) == 1


def post_zip(client: TestClient, members: dict[str, bytes], symlinks: tuple[str, ...] = ()):
    archive = zip_of(members, symlinks)
    return client.post("/api/v1/ingest-jobs", files={"file": ("c.zip", archive, "application/zip")})


HEADER = b"factory_id,product_id,image\n"


@pytest.mark.parametrize(
    ("members", "symlinks", "message"),
    [
        ({"manifest.csv": HEADER, "images": b"x", "images/a.jpg": b"y"}, (), "clashes"),
        ({"manifest.csv": HEADER, "a.jpg": b"x", "A.jpg": b"y"}, (), "twice"),
        ({"manifest.csv": HEADER, "link.jpg": b"/etc/passwd"}, ("link.jpg",), "symbolic link"),
        ({"manifest.csv": HEADER, "bad\x01name.jpg": b"x"}, (), "unsafe"),
        ({"manifest.csv": HEADER + b"F1,P9,a.jpg\n" * 1001}, (), "more than 1,000 rows"),
        ({"manifest.csv": b"\xff\xfe not utf-8"}, (), "not UTF-8"),
        ({"manifest.csv": HEADER, **{f"{i}.bin": b"\0" * 100_000 for i in range(3)}}, (), "expands"),
    ],
)
def test_odd_archives_are_refused_and_leave_nothing(client, members, symlinks, message):
    before = snapshot(client)
    response = post_zip(client, members, symlinks)
    assert response.status_code == 422 and message in response.json()["detail"], response.text
    assert list(client.services.settings.jobs_dir.iterdir()) == []
    assert snapshot(client) == before


def test_directories_in_an_archive_are_fine(client, catalogue):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cat/", b"")
        archive.writestr("cat/images/", b"")
        archive.writestr("cat/manifest.csv", HEADER + b"F1,P5,images/a.jpg\n")
        archive.writestr("cat/images/a.jpg", (catalogue.parent / "images" / "F001-P001-1.jpg").read_bytes())
    files = {"file": ("c.zip", buffer.getvalue(), "application/zip")}
    assert client.post("/api/v1/ingest-jobs", files=files).status_code == 202


def test_searches_while_images_are_deleted_never_fail(client):
    services = client.services
    for i in range(12):
        client.post("/api/v1/products", json={"id": f"Q{i}", "factory_id": "F1", "title": f"q{i}"})
        photo = jpeg_bytes(render_product(Design(seed=100 + i, palette=factory_palette(i)), size=200))
        client.post(f"/api/v1/products/Q{i}/images", files={"image": ("p.jpg", photo, "image/jpeg")})
    statuses: list[int] = []

    def searcher() -> None:
        for _ in range(15):
            files = {"image": ("q.jpg", PHOTO, "image/jpeg")}
            statuses.append(client.post("/api/v1/search", files=files, data={"include_weak": "true"}).status_code)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for i in range(12):
        assert client.delete(f"/api/v1/products/Q{i}").status_code == 204
    for thread in threads:
        thread.join(60)
    assert statuses and set(statuses) == {200}
    assert len(services.index) == 1


def test_uploads_to_a_product_deleted_at_the_same_moment_are_a_404_or_stored(client):
    results: list[int] = []
    for i in range(8):
        client.post("/api/v1/products", json={"id": f"R{i}", "factory_id": "F1", "title": "r"})
        photo = jpeg_bytes(render_product(Design(seed=200 + i, palette=factory_palette(i)), size=200))
        upload = threading.Thread(
            target=lambda p=photo, n=i: results.append(
                client.post(f"/api/v1/products/R{n}/images", files={"image": ("p.jpg", p, "image/jpeg")}).status_code
            )
        )
        upload.start()
        client.delete(f"/api/v1/products/R{i}")
        upload.join(30)
    assert set(results) <= {201, 404}, results
    indexed = set(client.services.index.ids().tolist())
    with client.services.sessions() as session:
        from sqlalchemy import text

        stored = {row[0] for row in session.execute(text("SELECT id FROM images"))}
    assert indexed == stored  # nothing indexed that the database lost, nor the other way round
