"""The HTTP API end to end: CRUD keeps the index in step, search, errors, docs and the web page."""

import io

import pytest
from fastapi.testclient import TestClient
from helpers import authorize, jpeg_bytes, png_bytes
from PIL import Image

from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.main import create_app


def photo(seed: int, size: int = 256) -> bytes:
    return jpeg_bytes(render_product(Design(seed=seed, palette=factory_palette(seed)), size=size))


@pytest.fixture
def client(make_services, effnet_embedder, backend):
    services = make_services(effnet_embedder, max_upload_bytes=2_000_000, max_image_bytes=2_000_000, **backend)
    with TestClient(create_app(services.settings, services)) as test_client:
        test_client.services = services
        authorize(test_client, services)
        yield test_client


def make_factory(client: TestClient, factory_id: str = "F1", **extra) -> dict:
    response = client.post("/api/v1/factories", json={"id": factory_id, "name": f"Factory {factory_id}", **extra})
    assert response.status_code == 201, response.text
    return response.json()


def make_product(client: TestClient, product_id: str, factory_id: str = "F1") -> dict:
    body = {"id": product_id, "factory_id": factory_id, "title": f"Product {product_id}", "moq": 100, "price": 2.5}
    response = client.post("/api/v1/products", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def upload(client: TestClient, product_id: str, data: bytes, name: str = "p.jpg"):
    return client.post(f"/api/v1/products/{product_id}/images", files={"image": (name, data, "image/jpeg")})


def search(client: TestClient, data: bytes, **form):
    return client.post("/api/v1/search", files={"image": ("q.jpg", data, "image/jpeg")}, data=form)


def test_catalogue_crud_and_search_end_to_end(client):
    make_factory(client, "F1", region="Yiwu", attributes={"certified": True})
    make_factory(client, "F2", region="Dongguan")
    make_product(client, "P1", "F1")
    make_product(client, "P2", "F2")
    first = upload(client, "P1", photo(1))
    assert first.status_code == 201 and first.json()["created"] is True
    assert upload(client, "P1", photo(1)).status_code == 200  # same bytes again: the stored image
    assert upload(client, "P2", photo(2)).status_code == 201
    assert client.get("/healthz").json()["images"] == 2

    # A copy: the catalogue photo reduced and saved again at a low JPEG quality.
    edited = jpeg_bytes(Image.open(io.BytesIO(photo(1))).resize((200, 200), Image.Resampling.LANCZOS), 50)
    body = search(client, edited, top_k="2").json()
    assert body["confident_match"] is True
    assert [f["factory_id"] for f in body["factories"]] == ["F1"]  # F2's product is no confident match
    best = body["factories"][0]
    assert best["name"] == "Factory F1" and best["region"] == "Yiwu" and best["match_level"] == "identical"
    assert best["matches"][0]["evidence"]["inliers"] >= 12 and best["matches"][0]["moq"] == 100
    body = search(client, edited, top_k="2", include_weak="true").json()
    assert [f["factory_id"] for f in body["factories"]] == ["F1", "F2"]
    assert body["factories"][1]["match_level"] == "similar" and body["factories"][1]["confident"] is False
    assert best["matches"][0]["product_id"] == "P1" and best["matches"][0]["image_id"] == first.json()["id"]
    assert body["took_ms"] > 0
    health = client.get("/healthz").json()
    # Through the scheduler: a clear match needs the photo alone, one image in one forward pass per search.
    assert health["searches_embedded"] == 2 and health["search_batches"] == 2
    assert health["index"].startswith("milvus hnsw" if client.services.index.filters_inside else "flat (exact)")
    thumbnail = client.get(best["matches"][0]["image_url"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"

    assert client.get("/api/v1/factories").json()[0]["product_count"] == 1
    assert client.get("/api/v1/products", params={"factory_id": "F2"}).json()[0]["id"] == "P2"
    assert client.get("/api/v1/products/P1").json()["image_ids"] == [first.json()["id"]]
    patched = client.patch("/api/v1/products/P1", json={"title": "Enamel mug", "moq": 50}).json()
    assert (patched["title"], patched["moq"], patched["price"]) == ("Enamel mug", 50, 2.5)
    assert client.patch("/api/v1/factories/F1", json={"name": "Acme"}).json()["region"] == "Yiwu"


def test_deletes_remove_vectors_from_search(client):
    for factory_id, product_id, seed in (("F1", "P1", 1), ("F2", "P2", 2), ("F3", "P3", 3)):
        make_factory(client, factory_id)
        make_product(client, product_id, factory_id)
        upload(client, product_id, photo(seed))
    image_id = client.get("/api/v1/products/P1").json()["image_ids"][0]

    def found() -> set[str]:
        return {f["factory_id"] for f in search(client, photo(1), include_weak="true").json()["factories"]}

    assert found() == {"F1", "F2", "F3"}
    assert client.delete(f"/api/v1/images/{image_id}").status_code == 204
    assert found() == {"F2", "F3"} and len(client.services.index) == 2
    assert client.delete("/api/v1/products/P2").status_code == 204
    assert found() == {"F3"}
    assert client.delete("/api/v1/factories/F3").status_code == 204
    assert search(client, photo(1)).json()["factories"] == []
    assert len(client.services.index) == 0
    assert client.get("/api/v1/products/P3").status_code == 404  # cascaded


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("get", "/api/v1/factories/nope", None, 404, "factory 'nope' not found"),
        ("get", "/api/v1/images/12345", None, 404, "image 12345 not found"),
        ("post", "/api/v1/products", {"id": "P9", "factory_id": "ghost", "title": "x"}, 422, "does not exist"),
        ("post", "/api/v1/factories", {"id": "bad id/..", "name": "x"}, 422, "pattern"),
        ("post", "/api/v1/products", {"id": "P9", "factory_id": "F1", "title": "x", "moq": 0}, 422, "greater"),
    ],
)
def test_errors_are_clear(client, method, path, body, status, message):
    make_factory(client, "F1")
    response = getattr(client, method)(path, **({"json": body} if body else {}))
    assert response.status_code == status
    assert message in str(response.json()["detail"])


def test_duplicates_conflict(client):
    make_factory(client, "F1")
    assert client.post("/api/v1/factories", json={"id": "F1", "name": "again"}).status_code == 409
    make_product(client, "P1")
    assert client.post("/api/v1/products", json={"id": "P1", "factory_id": "F1", "title": "t"}).status_code == 409


def test_bad_uploads_get_4xx_and_store_nothing(client):
    make_factory(client, "F1")
    make_product(client, "P1")
    not_image = upload(client, "P1", b"hello, I am text", "notes.txt")
    assert not_image.status_code == 422 and "not an image" in not_image.json()["detail"]
    assert upload(client, "P1", b"", "empty.jpg").status_code == 422
    too_big = upload(client, "P1", b"\xff" * 2_100_000)
    assert too_big.status_code == 413
    bomb = png_bytes(Image.new("1", (12000, 12000)))  # 144 megapixels in a few kilobytes
    response = search(client, bomb)
    assert response.status_code == 413 and "pixels" in response.json()["detail"]
    assert upload(client, "nope", photo(1)).status_code == 404
    assert client.get("/api/v1/products/P1").json()["image_ids"] == []
    assert len(client.services.index) == 0


def test_search_parameters_are_validated(client):
    assert search(client, photo(1), top_k="0").status_code == 422
    assert "top_k must be between" in search(client, photo(1), top_k="1000").json()["detail"]
    nothing = client.post("/api/v1/search", data={"top_k": "3"})
    assert nothing.status_code == 422 and "give a photo" in nothing.json()["detail"]
    huge = client.post("/api/v1/search", content=b"x" * 3_000_000, headers={"content-type": "application/octet-stream"})
    assert huge.status_code == 413


def test_search_on_an_ingested_catalogue(client, catalogue):
    client.services.ingest.ingest_manifest(catalogue)
    data = (catalogue.parent / "images" / "F003-P002-1.jpg").read_bytes()
    body = search(client, data, top_k="3").json()
    assert body["factories"][0]["factory_id"] == "F003"
    match = body["factories"][0]["matches"][0]
    assert match["similarity"] == pytest.approx(1.0, abs=1e-3) and match["match_level"] == "identical"
    assert match["score"] > match["similarity"]  # the verified copy's bonus


def test_openapi_docs_and_web_page(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/search", "/api/v1/factories", "/api/v1/products/{product_id}/images"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "SourceLens" in page.text and "/static/js/main.js" in page.text
    assert '"/api/v1/search"' in client.get("/static/js/main.js").text
    # Every module the page and the portal load is served (the browser tests drive them).
    for name in ("api", "crop", "results", "portal"):
        assert client.get(f"/static/js/{name}.js").status_code == 200
    portal = client.get("/portal")
    assert portal.status_code == 200 and "/static/js/portal.js" in portal.text
    assert client.get("/static/favicon.svg").status_code == 200


def test_the_pages_scripts_and_style_come_gzipped_to_a_browser_that_asks(client):
    from app.main import WEB_DIR

    original = (WEB_DIR / "js" / "results.js").read_bytes()
    packed = client.get("/static/js/results.js", headers={"Accept-Encoding": "gzip"})
    assert packed.status_code == 200 and packed.headers["content-encoding"] == "gzip"
    assert packed.content == original  # httpx undoes the encoding: the same file arrives
    assert int(packed.num_bytes_downloaded) < len(original) / 2
    plain = client.get("/static/js/results.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == original
    answer = client.get("/api/v1/factories", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in answer.headers  # the API's answers stay as they are


def test_listings_page_with_offset_and_limit(client):
    for factory_id in ("F1", "F2", "F3"):
        make_factory(client, factory_id)
    for product_id in ("P1", "P2", "P3", "P4"):
        make_product(client, product_id, "F2" if product_id == "P4" else "F1")

    def ids(path: str, **params) -> list[str]:
        return [row["id"] for row in client.get(path, params=params).json()]

    assert ids("/api/v1/factories") == ["F1", "F2", "F3"]
    assert ids("/api/v1/factories", offset=1, limit=1) == ["F2"]
    assert ids("/api/v1/factories", offset=3) == []
    assert ids("/api/v1/products", offset=1, limit=2) == ["P2", "P3"]
    assert ids("/api/v1/products", factory_id="F1", offset=2) == ["P3"]
    assert client.get("/api/v1/products", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/products", params={"limit": 501}).status_code == 422
    assert client.get("/api/v1/factories", params={"offset": -1}).status_code == 422
