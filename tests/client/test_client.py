"""The Python client against a live server: search with every option, catalogue CRUD, ingest jobs waited
on, keys; typed results; the server's errors as exceptions. The async client the same way."""

import asyncio
import csv
import io
import zipfile

import pytest
from helpers import catalogue_image as photo
from helpers import jpeg_bytes
from PIL import Image

from app.api.schemas import FactoryRead, SearchRead
from app.client import AsyncSourceLens, Filters, SourceLens, SourceLensError


def test_search_with_a_path_bytes_views_boxes_filters_and_paging(lens, catalogue):
    result = lens.search(photo(catalogue, "F002-P003-1.jpg"))
    assert isinstance(result, SearchRead) and result.confident_match
    assert result.factories[0].factory_id == "F002" and result.factories[0].match_words == "same product"
    as_bytes = lens.search(photo(catalogue, "F002-P003-1.jpg").read_bytes(), top_k=1, include_weak=True)
    assert as_bytes.factories[0].factory_id == "F002" and len(as_bytes.factories) == 1
    views = lens.search(photo(catalogue, "F003-P001-1.jpg"), photo(catalogue, "F003-P001-2.jpg"), boxes=[None, None])
    assert views.factories[0].factory_id == "F003"
    region = lens.factory("F001").region
    filtered = lens.search(photo(catalogue, "F002-P003-1.jpg"), filters=Filters(region=region), include_weak=True)
    assert filtered.factories and {f.region for f in filtered.factories} == {region}
    page_two = lens.search(photo(catalogue, "F002-P003-1.jpg"), top_k=1, offset=1, include_weak=True)
    assert page_two.offset == 1 and page_two.factories[0].factory_id != "F002"
    boxed = lens.search(
        photo(catalogue, "F001-P001-1.jpg"), boxes=["0.05,0.05,0.95,0.95"], verify=False, include_weak=True
    )
    assert boxed.factories[0].factory_id == "F001" and boxed.factories[0].matches[0].evidence is None


def test_similar_subjects_facets_and_calibration(lens, catalogue):
    image_id = lens.products(factory_id="F004")[0].image_ids[0]
    similar = lens.similar(image_id, top_k=3)
    assert similar.factories and all(m.image_id != image_id for f in similar.factories for m in f.matches)
    assert len(lens.subjects(photo(catalogue, "F004-P001-1.jpg")).boxes) == 1
    facets = lens.facets()
    assert facets.products == 16 and facets.factories == 4
    assert lens.calibration().source == "default"


def test_catalogue_crud_and_errors_carry_the_servers_message(lens, catalogue):
    made = lens.create_factory("CL1", "Client Factory", region="Ningbo", email="sales@example.com")
    assert isinstance(made, FactoryRead) and made.attributes == {"email": "sales@example.com"}
    assert lens.update_factory("CL1", region="Wenzhou").region == "Wenzhou"
    lens.create_product("CL1-P1", "CL1", "Client mug", price=3.5, moq=200)
    uploaded = lens.add_image("CL1-P1", photo(catalogue, "F001-P002-1.jpg"))
    assert uploaded.created and lens.product_images("CL1-P1")[0].id == uploaded.id
    assert lens.update_product("CL1-P1", price=4.0).price == 4.0
    with pytest.raises(SourceLensError) as refused:
        lens.create_factory("CL1", "Again")
    assert refused.value.status == 409 and "CL1" in refused.value.message
    with pytest.raises(SourceLensError) as bad:
        lens.search(photo(catalogue, "F001-P002-1.jpg"), boxes=["1,2,3"])
    assert bad.value.status == 422 and "bbox" in bad.value.message
    lens.delete_image(uploaded.id)
    lens.delete_product("CL1-P1")
    lens.delete_factory("CL1")
    with pytest.raises(SourceLensError) as gone:
        lens.factory("CL1")
    assert gone.value.status == 404


def test_a_job_is_submitted_and_waited_on_with_progress(lens, catalogue, tmp_path):
    bundle = tmp_path / "catalogue.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        rows = [f"CJ,Job Factory,Yiwu,CJ-P{n},Job product {n},cup,1,10,images/{n}.jpg" for n in range(3)]
        archive.writestr(
            "manifest.csv",
            "factory_id,factory_name,region,product_id,title,category,price,moq,image\n"
            + "\n".join([*rows, "CJ,Job Factory,Yiwu,CJ-PX,Broken,cup,1,10,images/missing.jpg"])
            + "\n",
        )
        for n, name in enumerate(["F001-P003-1.jpg", "F002-P002-1.jpg", "F003-P003-1.jpg"]):
            archive.write(photo(catalogue, name), f"images/{n}.jpg")
    job = lens.submit_job(bundle)
    seen: list[int] = []
    report = lens.wait_for_job(job.id, progress=lambda r: seen.append(r.done), poll_s=0.2, timeout_s=120)
    assert report.state == "done" and report.added == 3 and report.failed == 1 and seen[-1] == 4
    assert "missing.jpg" in report.errors[0].image
    failed = list(csv.DictReader(io.StringIO(lens.job_errors_csv(job.id))))
    assert [(r["line"], r["product_id"]) for r in failed] == [("5", "CJ-PX")] and "missing.jpg" in failed[0]["error"]
    assert any(j.id == job.id for j in lens.jobs())
    assert lens.cancel_job(job.id).state == "done"  # a finished job stays as it finished


def test_keys_and_a_search_key_refused_a_write(lens, server, catalogue):
    created = lens.create_key("reader", "search")
    assert created.token and any(k.id == created.id for k in lens.api_keys())
    with SourceLens(server[0], key=created.token) as reader:
        assert reader.search(photo(catalogue, "F002-P003-1.jpg")).factories
        with pytest.raises(SourceLensError) as forbidden:
            reader.create_factory("NOPE", "No")
        assert forbidden.value.status == 403
    assert lens.revoke_key(created.id).revoked_at is not None
    with SourceLens(server[0], key=created.token) as revoked, pytest.raises(SourceLensError) as unknown:
        revoked.facets()
    assert unknown.value.status == 401


def test_the_async_client_does_the_same(server, catalogue):
    url, admin = server

    async def run() -> tuple[SearchRead, int]:
        async with AsyncSourceLens(url, key=admin) as lens:
            views = [photo(catalogue, "F003-P002-1.jpg"), jpeg_bytes(Image.open(photo(catalogue, "F003-P002-2.jpg")))]
            results = await asyncio.gather(lens.search(views[0]), lens.search(*views))
            with pytest.raises(SourceLensError) as bad:
                await lens.search(io.BytesIO(b"x").getvalue())
            assert bad.value.status == 422
            facets = await lens.facets()
            return results[1], facets.products

    result, products = asyncio.run(run())
    assert result.factories[0].factory_id == "F003" and products >= 16


def test_a_photo_by_url_is_fetched_by_the_service_and_unsafe_urls_are_refused(lens, images_site, catalogue):
    by_url = lens.search(urls=[f"{images_site}/F004-P004-1.jpg"])
    assert by_url.confident_match and by_url.factories[0].factory_id == "F004"
    both = lens.search(photo(catalogue, "F004-P004-2.jpg"), urls=[f"{images_site}/F004-P004-1.jpg"])
    assert both.factories[0].factory_id == "F004"
    for url, reason in [
        (f"{images_site}/missing.jpg", "404"),
        ("http://127.0.0.1:9/x.jpg", "public"),  # a local address not on the allow-list
        ("ftp://example.com/x.jpg", "http(s) URL"),
    ]:
        with pytest.raises(SourceLensError) as refused:
            lens.search(urls=[url])
        assert refused.value.status == 422 and reason in refused.value.message, refused.value.message


def test_a_batch_of_photos_is_submitted_waited_on_and_read_back(lens, catalogue, images_site, tmp_path):
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{images_site}/F002-P004-1.jpg\n{images_site}/F001-P004-1.jpg\n")
    job = lens.submit_query_job(listing, top_k=1)
    seen: list[int] = []
    final = lens.wait_for_query_job(job.id, progress=lambda r: seen.append(r.done), poll_s=0.1, timeout_s=60)
    assert final.state == "done" and final.done == 2 and seen[-1] == 2
    first, second = lens.query_results(job.id)
    assert first.answer["factories"][0]["factory_id"] == "F002" and len(first.answer["factories"]) == 1
    assert second.answer["factories"][0]["factory_id"] == "F001"
    table = lens.query_results_csv(job.id)
    assert table.splitlines()[0].startswith("number,name,rank,factory_id") and len(table.splitlines()) == 3
    assert any(j.id == job.id for j in lens.query_jobs()) and lens.cancel_query_job(job.id).state == "done"


def test_a_saved_search_is_made_listed_polled_and_deleted(lens, catalogue):
    saved = lens.save_search(photo(catalogue, "F002-P002-1.jpg"), "a mug I sell")
    assert saved.name == "a mug I sell" and saved.matches == 0 and saved.checked_to > 0
    assert saved.id in [s.id for s in lens.saved_searches()]
    assert lens.saved_matches(saved.id) == []  # nothing added since
    with pytest.raises(SourceLensError) as bad:
        lens.save_search(b"not a photo", "x")
    assert bad.value.status == 422
    lens.delete_saved_search(saved.id)
    with pytest.raises(SourceLensError) as gone:
        lens.saved_matches(saved.id)
    assert gone.value.status == 404
