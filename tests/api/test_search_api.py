"""Search options through the HTTP API on a small ingested catalogue with the real offline model:
no-confident-match, filters, paging, crops, multi-view, text, more like this."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import authorize, jpeg_bytes, module_services
from PIL import Image, ImageOps

from app.demo.sample_catalogue import Design, render_product
from app.main import create_app
from app.search.verify import FeatureCache


@pytest.fixture(scope="module")
def client(tmp_path_factory, effnet_embedder, catalogue):
    services = module_services(tmp_path_factory, effnet_embedder, embed_batch_size=16)
    assert services.ingest.ingest_manifest(catalogue).added == 28
    with TestClient(create_app(services.settings, services)) as test_client:
        test_client.services = services
        authorize(test_client, services)
        yield test_client
    services.close()


def catalogue_photo(catalogue: Path, name: str) -> Image.Image:
    return Image.open(catalogue.parent / "images" / name).convert("RGB")


def search(client: TestClient, *images: Image.Image, **form: str):
    files = [("image", (f"q{i}.jpg", jpeg_bytes(image), "image/jpeg")) for i, image in enumerate(images)]
    return client.post("/api/v1/search", files=files, data=form)


def factory_ids(body: dict) -> list[str]:
    return [f["factory_id"] for f in body["factories"]]


def test_a_product_the_catalogue_lacks_gets_no_confident_match(client):
    stranger = render_product(Design(seed=987_654, palette=((30, 200, 90), (10, 10, 120), (240, 240, 20))), size=320)
    body = search(client, stranger).json()
    assert body["confident_match"] is False and body["factories"] == []
    assert "No confident match" in body["message"]
    weak = search(client, stranger, include_weak="true").json()
    assert weak["factories"] and all(f["match_level"] == "similar" and not f["confident"] for f in weak["factories"])


def test_an_edited_copy_is_identical_with_evidence(client, catalogue):
    query = ImageOps.mirror(catalogue_photo(catalogue, "F003-P002-1.jpg")).rotate(12, expand=True, fillcolor="white")
    body = search(client, query).json()
    assert body["confident_match"] is True and factory_ids(body)[0] == "F003"
    match = body["factories"][0]["matches"][0]
    assert match["product_id"] == "F003-P002" and match["match_level"] == "identical"
    evidence = match["evidence"]
    assert evidence["mirrored"] is True and evidence["inliers"] >= 12 and evidence["agreement"] >= 0.85
    x0, y0, x1, y1 = evidence["region"]
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert match["match_words"] == "same product" and body["factories"][0]["match_words"] == "same product"
    assert body["thresholds"] == "default"  # this catalogue was never calibrated

    unverified = search(client, query, verify="false", include_weak="true").json()["factories"][0]["matches"][0]
    assert unverified["evidence"] is None and unverified["match_level"] != "identical"


def test_the_thresholds_in_use_are_reported(client):
    body = client.get("/api/v1/calibration").json()
    assert body["source"] == "default" and body["calibrated_at"] is None and body["confident_wrong"] is None
    thresholds = client.services.search.thresholds
    assert body["thresholds"]["near_duplicate"] == pytest.approx(thresholds.near_duplicate)
    assert body["thresholds"]["max_region"] == pytest.approx(thresholds.max_region)


def test_only_the_best_ranked_candidates_are_tried_mirrored(client, catalogue, monkeypatch):
    query = ImageOps.mirror(catalogue_photo(catalogue, "F003-P002-1.jpg"))
    evidence = [m["evidence"] for f in search(client, query).json()["factories"] for m in f["matches"]]
    assert any(e and e["mirrored"] for e in evidence)
    monkeypatch.setattr("app.search.evidence.MIRROR_TOP", 0)
    evidence = [
        m["evidence"] for f in search(client, query, include_weak="true").json()["factories"] for m in f["matches"]
    ]
    assert evidence and not any(e and e["mirrored"] for e in evidence)


def test_crops_are_searched_only_when_the_photo_alone_finds_no_confident_match(client, catalogue):
    def embedded() -> tuple[int, int]:
        health = client.get("/healthz").json()
        return health["searches_embedded"], health["search_batches"]

    images, batches = embedded()
    clear = search(client, catalogue_photo(catalogue, "F001-P002-1.jpg")).json()
    assert clear["confident_match"] is True and "passes" not in clear["timings_ms"]
    assert embedded() == (images + 1, batches + 1)  # the photo alone, one forward pass
    stranger = render_product(Design(seed=4242, palette=((200, 30, 60), (20, 120, 20), (250, 250, 250))), size=320)
    padded = ImageOps.expand(stranger, border=80, fill="white")
    unclear = search(client, padded, include_weak="true").json()
    assert unclear["confident_match"] is False and unclear["timings_ms"]["passes"] == 2
    # Then its trimmed subject and the photo zoomed out, together in a second forward pass.
    assert embedded() == (images + 4, batches + 3)
    plain = search(client, padded, include_weak="true", auto_crop="false").json()
    assert "passes" not in plain["timings_ms"] and embedded() == (images + 5, batches + 4)  # the photo alone
    # Nothing to trim and not tilted: the photo may be a tight crop of a catalogue photo, so it is searched
    # zoomed out too (the room around the product put back).
    texture = Image.fromarray(np.random.default_rng(7).integers(0, 255, (240, 320, 3), dtype=np.uint8))
    frameless = search(client, texture, include_weak="true").json()
    assert frameless["confident_match"] is False and frameless["timings_ms"]["passes"] == 2
    assert embedded() == (images + 7, batches + 6)


def test_a_missing_stored_copy_leaves_its_hit_unverified_not_the_search_failed(client, catalogue):
    services = client.services
    image_id = client.get("/api/v1/products/F002-P001").json()["image_ids"][0]
    stored = services.media.path(client.get(f"/api/v1/images/{image_id}").json()["content_hash"])
    cache, services.search.evidence.features = services.search.evidence.features, FeatureCache(services.media.open)
    stored.rename(stored.with_suffix(".away"))
    try:
        response = search(client, catalogue_photo(catalogue, "F002-P001-1.jpg"), include_weak="true")
        similar = client.get(f"/api/v1/images/{image_id}/similar")
    finally:
        stored.with_suffix(".away").rename(stored)
        services.search.evidence.features = cache
    assert response.status_code == 200 and similar.status_code == 200
    match = response.json()["factories"][0]["matches"][0]
    assert match["image_id"] == image_id and match["evidence"] is None
    assert all(m["evidence"] is None for f in similar.json()["factories"] for m in f["matches"])


@pytest.mark.parametrize(
    ("form", "check"),
    [
        ({"region": "Dongguan"}, lambda f, m: f["region"] == "Dongguan"),
        ({"category": "clock"}, lambda f, m: m["category"] == "clock"),
        ({"max_moq": "100"}, lambda f, m: m["moq"] <= 100),
        ({"min_price": "10", "max_price": "25"}, lambda f, m: 10 <= m["price"] <= 25),
    ],
)
def test_filters_keep_only_matching_products(client, catalogue, form, check):
    query = catalogue_photo(catalogue, "F003-P002-1.jpg")
    body = search(client, query, include_weak="true", top_k="20", **form).json()
    assert body["factories"], body
    assert all(check(f, m) for f in body["factories"] for m in f["matches"])
    unfiltered = search(client, query, include_weak="true", top_k="20").json()
    assert body["total"] < unfiltered["total"] or sum(len(f["matches"]) for f in body["factories"]) < sum(
        len(f["matches"]) for f in unfiltered["factories"]
    )


def test_factory_attribute_filter_and_bad_filters(client, catalogue):
    assert client.patch("/api/v1/factories/F002", json={"attributes": {"oem": True}}).status_code == 200
    query = catalogue_photo(catalogue, "F003-P002-1.jpg")
    body = search(client, query, include_weak="true", factory_attributes=json.dumps({"oem": True})).json()
    assert factory_ids(body) == ["F002"]
    bad = search(client, query, factory_attributes="{oem")
    assert bad.status_code == 422 and "not JSON" in bad.json()["detail"]
    assert search(client, query, factory_attributes="[1]").status_code == 422
    crossed = search(client, query, min_price="9", max_price="2")
    assert crossed.status_code == 422 and "above max_price" in crossed.json()["detail"]
    nothing = search(client, query, region="Atlantis").json()
    assert nothing["factories"] == [] and nothing["total"] == 0


def test_paging_and_min_score(client, catalogue):
    query = catalogue_photo(catalogue, "F001-P001-1.jpg")
    first = search(client, query, include_weak="true", top_k="2").json()
    second = search(client, query, include_weak="true", top_k="2", offset="2").json()
    assert first["total"] == second["total"] == 4 and second["offset"] == 2
    assert len(first["factories"]) == len(second["factories"]) == 2
    assert not set(factory_ids(first)) & set(factory_ids(second))
    assert first["factories"][1]["score"] >= second["factories"][0]["score"]
    beyond = search(client, query, include_weak="true", offset="8").json()
    assert beyond["factories"] == [] and "beyond offset 8" in beyond["message"]
    strict = search(client, query, include_weak="true", min_score="0.99").json()
    assert factory_ids(strict) == ["F001"] and [m["product_id"] for m in strict["factories"][0]["matches"]] == [
        "F001-P001"
    ]
    assert search(client, query, offset="-1").status_code == 422


def test_results_are_distinct_by_product(client, catalogue):
    body = search(client, catalogue_photo(catalogue, "F002-P001-1.jpg"), include_weak="true", top_k="10").json()
    products = [m["product_id"] for f in body["factories"] for m in f["matches"]]
    assert len(products) == len(set(products))


def screenshot_of(photo: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int]]:
    canvas = Image.new("RGB", (photo.width * 2, photo.height * 2), (30, 30, 160))
    for x in range(0, canvas.width, 23):  # a busy page around the product
        canvas.paste((200, (x * 7) % 255, 40), (x, 0, x + 9, canvas.height))
    left, top = photo.width // 3, photo.height // 2
    canvas.paste(photo, (left, top))
    return canvas, (left, top, left + photo.width, top + photo.height)


def test_bbox_picks_the_product_out_of_a_busy_photo(client, catalogue):
    canvas, box = screenshot_of(catalogue_photo(catalogue, "F004-P003-1.jpg"))
    body = search(client, canvas, bbox=",".join(map(str, box))).json()
    assert factory_ids(body)[:1] == ["F004"] and body["factories"][0]["matches"][0]["product_id"] == "F004-P003"
    fractions = ",".join(f"{v / s:.4f}" for v, s in zip(box, canvas.size * 2, strict=True))
    assert search(client, canvas, bbox=fractions).json()["factories"][0]["matches"][0]["product_id"] == "F004-P003"
    for bad, message in [("1,2,3", "four numbers"), ("a,b,c,d", "four numbers"), ("0,0,5000,10", "inside")]:
        response = search(client, canvas, bbox=bad)
        assert response.status_code == 422 and message in response.json()["detail"]


def test_auto_crop_finds_a_padded_product(client, catalogue):
    photo = catalogue_photo(catalogue, "F002-P003-1.jpg").resize((160, 160))
    padded = ImageOps.expand(photo, border=(200, 60, 40, 220), fill=(20, 120, 20))
    body = search(client, padded, include_weak="true").json()  # a plain product: too few corners to verify
    assert body["factories"][0]["matches"][0]["product_id"] == "F002-P003"


def test_several_views_of_one_product_search_as_one(client, catalogue):
    views = [catalogue_photo(catalogue, "F001-P002-1.jpg"), catalogue_photo(catalogue, "F001-P002-2.jpg")]
    views = [view.resize((200, 200)).rotate(8, fillcolor="white") for view in views]
    body = search(client, *views).json()
    assert body["factories"][0]["matches"][0]["product_id"] == "F001-P002"
    mismatch = search(client, *views, bbox="0,0,10,10")
    assert mismatch.status_code == 422 and "one per photo" in mismatch.json()["detail"]
    too_many = search(client, *([views[0]] * 9))
    assert too_many.status_code == 422 and "at most 8" in too_many.json()["detail"]


def test_text_needs_a_model_with_a_text_encoder(client, catalogue):
    response = client.post("/api/v1/search", data={"text": "ceramic mug"})
    detail = response.json()["detail"]
    assert response.status_code == 400 and detail == "the model effnet-lite0 has no text encoder; search with a photo"
    photo_and_text = search(client, catalogue_photo(catalogue, "F001-P001-1.jpg"), text="mug")
    assert photo_and_text.status_code == 400


def test_more_like_this(client):
    image_id = client.get("/api/v1/products/F003-P001").json()["image_ids"][0]
    body = client.get(f"/api/v1/images/{image_id}/similar", params={"top_k": 3}).json()
    products = [m["product_id"] for f in body["factories"] for m in f["matches"]]
    assert products and "F003-P001" not in products and len(body["factories"]) <= 3
    filtered = client.get(f"/api/v1/images/{image_id}/similar", params={"region": "Yiwu"}).json()
    assert factory_ids(filtered) == ["F001"]
    assert client.get("/api/v1/images/999999/similar").status_code == 404


def test_text_and_photo_plus_text_with_a_clip_model(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder)
    services.ingest.ingest_manifest(catalogue)
    with TestClient(create_app(services.settings, services)) as tiny:
        authorize(tiny, services, "search")
        text = tiny.post("/api/v1/search", data={"text": "a ceramic mug", "top_k": "3"}).json()
        assert len(text["factories"]) == 3 and text["confident_match"] is False  # listed, never claimed
        photo = Image.open(io.BytesIO((catalogue.parent / "images" / "F002-P002-1.jpg").read_bytes()))
        both = search(tiny, photo, text="steel", top_k="2").json()
        assert len(both["factories"]) == 2
        long = tiny.post("/api/v1/search", data={"text": "x" * 501})
        assert long.status_code == 422 and "longer than" in long.json()["detail"]


def test_facets_are_the_catalogues_own_values_with_counts(client):
    body = client.get("/api/v1/facets").json()
    products = client.get("/api/v1/products", params={"limit": 500}).json()
    assert body["products"] == len(products) and body["factories"] >= 1
    categories = {c["value"]: c["products"] for c in body["categories"]}
    for name in categories:
        assert categories[name] == sum(p["category"] == name for p in products)
    assert body["min_price"] == min(p["price"] for p in products if p["price"] is not None)
    assert sum(r["products"] for r in body["regions"]) <= len(products)


def test_subjects_are_boxes_a_search_takes(client, catalogue):
    left = catalogue_photo(catalogue, "F001-P001-1.jpg")
    right = catalogue_photo(catalogue, "F003-P002-1.jpg").resize((200, 200))
    photo = Image.new("RGB", (700, 400), (255, 255, 255))
    photo.paste(left.crop((10, 10, left.width - 10, left.height - 10)), (20, 40))
    photo.paste(right.crop((5, 5, 195, 195)), (480, 100))
    response = client.post("/api/v1/subjects", files={"image": ("p.jpg", jpeg_bytes(photo), "image/jpeg")})
    assert response.status_code == 200, response.text
    boxes = response.json()["boxes"]
    assert len(boxes) == 2 and all(0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 for x0, y0, x1, y1 in boxes)
    second = ",".join(str(v) for v in boxes[1])
    body = search(client, photo, bbox=second).json()
    assert factory_ids(body)[0] == "F003"
    bad = client.post("/api/v1/subjects", files={"image": ("p.jpg", b"not an image", "image/jpeg")})
    assert bad.status_code == 422 and "image" in bad.json()["detail"]


def test_each_answer_names_the_photos_likely_category(client, catalogue):
    products = {p["id"]: p for p in client.get("/api/v1/products", params={"limit": 500}).json()}
    body = search(client, catalogue_photo(catalogue, "F002-P003-1.jpg")).json()
    assert body["categories"][0]["category"] == products["F002-P003"]["category"]
    assert 0 < body["categories"][0]["confidence"] <= 1 and len(body["categories"]) <= 3
    stranger = render_product(Design(seed=55_555, palette=((200, 30, 90), (10, 120, 10), (240, 240, 240))), size=320)
    unknown = search(client, stranger).json()
    assert unknown["factories"] == [] and unknown["categories"]  # no factory, yet a likely category


def test_a_photo_of_two_products_is_answered_for_each(client, catalogue):
    left = catalogue_photo(catalogue, "F001-P001-1.jpg")
    right = catalogue_photo(catalogue, "F003-P002-1.jpg").resize((200, 200))
    photo = Image.new("RGB", (700, 400), (255, 255, 255))
    photo.paste(left.crop((10, 10, left.width - 10, left.height - 10)), (20, 40))
    photo.paste(right.crop((5, 5, 195, 195)), (480, 100))
    body = search(client, photo, per_subject="true").json()
    subjects = body["subjects"]
    assert len(subjects) == 2
    assert factory_ids(subjects[0]["answer"])[0] == "F001" and factory_ids(subjects[1]["answer"])[0] == "F003"
    assert subjects[0]["box"][2] < 0.5 < subjects[1]["box"][0]  # the big one on the left, then the right one
    assert factory_ids(body) == factory_ids(subjects[0]["answer"])  # the top level answers the first
    refused = search(client, photo, photo, per_subject="true")
    assert refused.status_code == 422 and "one image" in refused.json()["detail"]


def test_a_factory_sees_how_often_searches_found_its_products(client, catalogue):
    client.services.search_counts.flush()  # the earlier tests' searches, counted before this one
    before = {c["product_id"]: c for c in client.get("/api/v1/factories/F004/search-counts").json()}
    assert search(client, catalogue_photo(catalogue, "F004-P004-1.jpg")).json()["factories"][0]["factory_id"] == "F004"
    client.services.search_counts.flush()  # the thread does this every few seconds
    after = {c["product_id"]: c for c in client.get("/api/v1/factories/F004/search-counts").json()}
    old = before.get("F004-P004", {"shown": 0, "confident": 0})
    assert after["F004-P004"]["shown"] == old["shown"] + 1 and after["F004-P004"]["confident"] == old["confident"] + 1
    assert client.get("/api/v1/factories/NOPE/search-counts").status_code == 404
    other = client.services.keys.create("another factory", "factory", ["F001"]).token
    refused = client.get("/api/v1/factories/F004/search-counts", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403
