"""The search service: known answers with the real offline model, and its decisions on catalogues large
enough for them to matter (how views are fused, how many candidates are drawn, how deep verification goes,
when a second pass is taken)."""

import hashlib
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import module_services
from PIL import Image, ImageEnhance

from app.catalog.index_sync import vector_to_bytes
from app.catalog.models import Factory, Product
from app.catalog.models import Image as ImageRow
from app.core.errors import NotFoundError
from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.search.compare import Comparison
from app.search.fusion import ImageRef, best_per_image, fuse_views
from app.search.lookup import SearchLookup
from app.search.options import QueryPhoto, SearchFilters, SearchOptions
from app.search.pipeline import settled
from app.search.scoring import FactoryScore, Hit, Thresholds, with_evidence
from app.search.verify import Verification
from embeddings.scheduler import SchedulerPolicy


def test_views_are_fused_by_the_mean_so_a_product_matching_every_view_wins():
    rows = [
        ImageRef(1, "PA", "h1", "FA"),
        ImageRef(2, "PB", "h2", "FB"),
        ImageRef(5, "PB", "h5", "FB"),
        ImageRef(4, "PC", "h4", "FC"),
    ]
    per_view = [{1: 0.9, 2: 0.75, 5: 0.2, 4: 0.3}, {1: 0.5, 2: 0.75}]
    hits = {hit.product_id: hit for hit in fuse_views(per_view, rows)}
    assert [h.product_id for h in fuse_views(per_view, rows)] == ["PB", "PA", "PC"]
    assert hits["PB"].similarity == pytest.approx(0.75) and hits["PB"].image_id == 2  # its best image
    assert hits["PA"].similarity == pytest.approx(0.7)  # one great view, one poor: the mean, not the max
    # A product missing from a view counts with that view's lowest similarity in the pool (0.5 here).
    assert hits["PC"].similarity == pytest.approx(0.4)


def test_one_view_keeps_each_products_best_image():
    rows = [ImageRef(1, "PA", "h1", "FA"), ImageRef(2, "PA", "h2", "FA")]
    (hit,) = fuse_views([{1: 0.6, 2: 0.8}], rows)
    assert (hit.image_id, hit.similarity) == (2, pytest.approx(0.8))


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def at_similarity(query: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with the unit `query` is exactly `similarity`."""
    noise = rng.standard_normal(query.shape).astype(np.float32)
    noise -= noise.dot(query) * query
    noise /= np.linalg.norm(noise)
    return (similarity * query + np.sqrt(1 - similarity**2) * noise).astype(np.float32)


class Catalogue:
    """Rows written straight to the database and index, with embeddings at chosen similarities to a query."""

    def __init__(self, services, query_data: bytes) -> None:
        self.services = services
        loaded = services.search.decoder.decode(query_data)
        self.query = services.model.embed_images([loaded.image])[0]
        self.rng = np.random.default_rng(0)
        self.next_id = 0

    def add(self, factory_id: str, product_id: str, similarity: float, picture: Image.Image | None = None) -> None:
        rt, self.next_id = self.services, self.next_id + 1
        digest = hashlib.sha256(f"{product_id}:{self.next_id}".encode()).hexdigest()
        vector = at_similarity(self.query, similarity, self.rng)
        if picture is not None:
            rt.media.save(digest, picture)
        with rt.sessions() as session:
            if session.get(Factory, factory_id) is None:
                session.add(Factory(id=factory_id, name=factory_id, attributes={}))
            if session.get(Product, product_id) is None:
                session.add(Product(id=product_id, factory_id=factory_id, title=product_id, attributes={}))
            image = ImageRow(
                product_id=product_id,
                content_hash=digest,
                source="test",
                width=320,
                height=320,
                embedder=rt.model.name,
                embedding=vector_to_bytes(vector),
            )
            session.add(image)
            session.commit()
            rt.index.upsert(np.array([image.id]), vector[None, :])


def run(services, data: bytes, **options):
    return services.search.run([QueryPhoto(data)], None, SearchOptions(**options))


def test_the_top_30_products_are_verified_and_no_more(make_services, tiny_embedder):
    photo = render_product(Design(seed=1001, palette=factory_palette(3)), size=320)
    services = make_services(tiny_embedder)
    catalogue = Catalogue(services, jpeg(photo))
    for rank in range(29):  # lookalikes, closer than the copies by the embedding alone
        other = render_product(Design(seed=2000 + rank, palette=factory_palette(rank)), size=320)
        catalogue.add(f"D{rank:02d}", f"D{rank:02d}-P", 0.99 - rank * 0.001, other)
    catalogue.add("FT", "T", 0.95, photo)  # 30th by similarity: verified, so found to be the same photo
    catalogue.add("FT2", "T2", 0.949, photo)  # 31st: the same photo too, but beyond the verified depth
    result = run(services, jpeg(photo))
    assert [f.factory_id for f in result.factories] == ["FT"]
    assert result.factories[0].matches[0].level == "identical"
    weak = run(services, jpeg(photo), include_weak=True, top_k=40)
    levels = {f.factory_id: f.matches[0].level for f in weak.factories}
    assert levels["FT2"] == "similar" and levels["FT2"] != levels["FT"]


@pytest.fixture(scope="module")
def crowded(tmp_path_factory, tiny_embedder):
    """Factory A's 150 images and A2's 85 come before B's and C's one each."""
    services = module_services(tmp_path_factory, tiny_embedder, precision="fp32")
    photo = jpeg(render_product(Design(seed=7, palette=factory_palette(7)), size=320))
    catalogue = Catalogue(services, photo)
    for i in range(150):
        catalogue.add("A", f"A-{i}", 0.95 - i * 0.001)
    for i in range(85):
        catalogue.add("A2", f"A2-{i}", 0.7 - i * 0.001)
    catalogue.add("B", "B-1", 0.5)
    catalogue.add("C", "C-1", 0.4)
    yield services, photo
    services.close()


@pytest.mark.parametrize(
    ("top_k", "offset", "factories_found"),
    [
        (1, 0, 2),  # at least 200 candidates: A's 150 and A2's best 50
        (10, 0, 2),  # 20 per factory asked for is 200 too
        (12, 0, 4),  # 240: everyone
        (2, 10, 4),  # the pages skipped count: (10 + 2) x 20
    ],
)
def test_the_candidate_pool_grows_with_the_factories_asked_for(crowded, top_k, offset, factories_found):
    services, photo = crowded
    result = run(services, photo, top_k=top_k, offset=offset, include_weak=True, verify=False, auto_crop=False)
    assert result.total == factories_found


def edited(path: Path, how: str) -> bytes:
    image = Image.open(path).convert("RGB")
    if how == "resized":
        image = image.resize((image.width // 2, image.height // 2))
    elif how == "stretched":
        image = image.resize((image.width // 2, image.height // 3 * 2))
    elif how == "cropped":
        w, h = image.size
        image = image.crop((int(w * 0.08), int(h * 0.08), int(w * 0.92), int(h * 0.92)))
    elif how == "brighter":
        image = ImageEnhance.Brightness(image).enhance(1.25)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=40 if how == "recompressed" else 80)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def effnet_services(tmp_path_factory, effnet_embedder, catalogue):
    services = module_services(tmp_path_factory, effnet_embedder, embed_batch_size=16)
    assert services.ingest.ingest_manifest(catalogue).added == 28
    yield services
    services.close()


@pytest.mark.parametrize("how", ["resized", "stretched", "recompressed", "cropped", "brighter"])
def test_edited_copy_of_a_catalogue_photo_finds_its_factory_first(effnet_services, catalogue, how):
    images = sorted((catalogue.parent / "images").glob("*-1.jpg"))
    for path in images:
        factory_id, product_id = path.name[:4], path.name.rsplit("-", 1)[0]
        result = run(effnet_services, edited(path, how), top_k=3, include_weak=True)  # ranking, whatever the evidence
        top = result.factories[0]
        assert top.factory_id == factory_id, f"{path.name} ({how}) → {top.factory_id}"
        assert top.matches[0].product_id == product_id


def test_top_k_and_result_shape(effnet_services, catalogue):
    data = edited(catalogue.parent / "images" / "F002-P001-1.jpg", "resized")
    result = run(effnet_services, data, top_k=2, include_weak=True)
    assert len(result.factories) == 2 and result.total == 4
    assert result.factories[0].score >= result.factories[1].score
    assert set(result.factory_rows) == {f.factory_id for f in result.factories}


def test_a_search_times_each_stage_and_a_calibration_applies_from_the_next_search_on(effnet_services, catalogue):
    data = edited(catalogue.parent / "images" / "F002-P001-1.jpg", "resized")
    result = run(effnet_services, data)
    stages = {"decode", "preprocess", "embed", "search", "lookup", "verify", "categories"}
    assert set(result.timings_ms) - {"passes"} == stages and all(ms >= 0 for ms in result.timings_ms.values())
    assert result.took_ms >= result.timings_ms["embed"] and result.thresholds == "default"
    search = effnet_services.search
    shipped = search.thresholds
    search.use_thresholds(replace(shipped, source="catalogue"))
    try:
        assert run(effnet_services, data).thresholds == "catalogue"
        assert search.policy.max_top_k == effnet_services.settings.max_top_k  # the rest of the policy kept
    finally:
        search.use_thresholds(shipped)


def test_category_names_go_through_the_text_tower_once_each(make_services, tiny_embedder, catalogue, monkeypatch):
    services = make_services(tiny_embedder)
    services.ingest.ingest_manifest(catalogue)
    encoded: list[str] = []
    embed_text = services.scheduler.embed_text
    monkeypatch.setattr(services.scheduler, "embed_text", lambda text: encoded.append(text) or embed_text(text))
    photo = (catalogue.parent / "images" / "F002-P002-1.jpg").read_bytes()
    first = run(services, photo, include_weak=True)
    names = {f"a photo of a {category.category}" for category in first.categories}
    assert first.categories and names <= set(encoded) and len(encoded) == len(set(encoded))
    assert all(text.startswith("a photo of a ") for text in encoded)
    count = len(encoded)
    assert run(services, photo, include_weak=True).categories == first.categories
    assert len(encoded) == count  # the second search reads them from the cache


def test_each_subject_of_a_photo_is_searched_with_the_words_given(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder)
    services.ingest.ingest_manifest(catalogue)
    left = Image.open(catalogue.parent / "images" / "F001-P001-1.jpg")
    right = Image.open(catalogue.parent / "images" / "F003-P002-1.jpg").resize((200, 200))
    photo = Image.new("RGB", (700, 400), (255, 255, 255))
    photo.paste(left.crop((10, 10, left.width - 10, left.height - 10)), (20, 40))
    photo.paste(right.crop((5, 5, 195, 195)), (480, 100))
    with_words = services.search.per_subject(jpeg(photo), "a ceramic mug", SearchOptions(top_k=3))
    without = services.search.per_subject(jpeg(photo), None, SearchOptions(top_k=3))
    assert len(with_words) == len(without) == 2
    # Words make a search list candidates instead of gating on a confident match: every subject's search had them.
    assert [answer.gated for _, answer in with_words] == [False, False]
    assert [answer.gated for _, answer in without] == [True, True]


def test_only_a_clear_top_match_settles_a_search_without_crops():
    cut = Thresholds(0.95)
    same = Comparison(0.0, 0.0, 1.0, 0.0, True, 0.0)
    clean = Verification(40, 50, (0.1, 0.1, 0.9, 0.9), False, agreement=0.99, comparison=same)
    doubtful = Verification(14, 20, (0.1, 0.1, 0.9, 0.9), False, agreement=0.88, comparison=same)
    sibling = Verification(40, 50, (0.1, 0.1, 0.9, 0.9), False, 0.99, Comparison(0.2, 0.1, 1.0, 0.0, True, 0.0))

    def factory(similarity: float, verification: Verification | None) -> FactoryScore:
        hit = with_evidence(Hit(1, "P", "F", similarity), verification, cut)
        return FactoryScore("F", hit.rank_score, [hit])

    assert settled([factory(0.80, clean)])  # a clean copy
    assert settled([factory(0.97, None)])  # a near-duplicate by similarity alone
    assert not settled([factory(0.80, doubtful)])  # identical, but its pixels agree only so-so
    assert not settled([factory(0.97, sibling)])  # as similar as a near-duplicate, but another colour of it
    assert not settled([factory(0.90, None), factory(0.70, clean)])  # the confident one is not on top
    assert not settled([])


def test_each_image_keeps_its_best_similarity_over_the_crops():
    rows = [
        (np.array([0.9, 0.5, 0.1]), np.array([1, 2, -1])),  # the photo; -1: a slot FAISS could not fill
        (np.array([0.95, 0.4]), np.array([2, 3])),  # a crop
    ]
    assert best_per_image(rows) == {1: 0.9, 2: 0.95, 3: 0.4}
    assert best_per_image([(np.array([0.7, 0.2]), np.array([0, -1]))]) == {0: 0.7}  # only negative ids are empty


def test_a_view_that_found_nothing_counts_as_zero_for_every_product():
    rows = [ImageRef(1, "PA", "h1", "FA"), ImageRef(2, "PB", "h2", "FB")]
    hits = {hit.product_id: hit.similarity for hit in fuse_views([{1: 0.8, 2: 0.6}, {}], rows)}
    assert hits == {"PA": pytest.approx(0.4), "PB": pytest.approx(0.3)}


def test_products_deleted_while_a_search_runs_are_left_out_of_its_page(effnet_services, catalogue, monkeypatch):
    data = edited(catalogue.parent / "images" / "F002-P001-1.jpg", "resized")
    full = run(effnet_services, data, top_k=4, include_weak=True)
    gone_product = full.factories[0].matches[0].product_id
    gone_factory = full.factories[1].factory_id
    real = effnet_services.search.lookup.reader

    def reader_that_lost_two():
        from contextlib import contextmanager

        @contextmanager
        def wrapped():
            with real() as reader:
                page_rows = reader.page_rows

                def without(factory_ids, product_ids):
                    factories, products = page_rows(factory_ids, product_ids)
                    factories.pop(gone_factory)
                    products.pop(gone_product)
                    return factories, products

                reader.page_rows = without
                yield reader

        return wrapped()

    monkeypatch.setattr(effnet_services.search.lookup, "reader", reader_that_lost_two)
    result = run(effnet_services, data, top_k=4, include_weak=True)
    assert gone_factory not in [f.factory_id for f in result.factories]
    assert all(m.product_id != gone_product for f in result.factories for m in f.matches)
    assert result.total == full.total - (len(full.factories) - len(result.factories))


def test_price_bounds_keep_a_price_equal_to_them_and_a_missing_source_image_is_named(rolled_back_sessions):
    with rolled_back_sessions() as session:
        session.add(Factory(id="F", name="F", attributes={}))
        for product_id, price in (("cheap", 1.0), ("mid", 2.0), ("dear", 3.0)):
            session.add(Product(id=product_id, factory_id="F", title=product_id, price=price, attributes={}))
            embedding = vector_to_bytes(np.ones(4, np.float32))
            session.add(
                ImageRow(
                    product_id=product_id,
                    content_hash=product_id,
                    source="t",
                    width=1,
                    height=1,
                    embedder="m",
                    embedding=embedding,
                )
            )
        session.commit()
    with SearchLookup(rolled_back_sessions).reader() as reader:

        def products(**bounds: float) -> list[str]:
            allowed = reader.allowed_image_ids(SearchFilters(**bounds))
            return sorted(ref.product_id for ref in reader.image_refs(allowed.tolist()))

        assert products(min_price=2.0) == ["dear", "mid"]
        assert products(max_price=2.0) == ["cheap", "mid"]
        assert products(min_price=2.0, max_price=2.0) == ["mid"]
        with pytest.raises(NotFoundError, match=r"^image 999 not found$"):  # "more like this" of a deleted image
            reader.source_image(999)


def test_a_copy_found_first_ends_verification_with_the_rest_unchecked(make_services, tiny_embedder):
    photo = render_product(Design(seed=1001, palette=factory_palette(3)), size=320)
    services = make_services(tiny_embedder)
    catalogue = Catalogue(services, jpeg(photo))
    catalogue.add("FT", "T", 0.99, photo)
    for rank in range(12):  # lookalikes, well below the copy
        other = render_product(Design(seed=2000 + rank, palette=factory_palette(rank)), size=320)
        catalogue.add(f"D{rank:02d}", f"D{rank:02d}-P", 0.80 - rank * 0.001, other)
    result = run(services, jpeg(photo), include_weak=True, top_k=20)
    assert result.evidence[0].product_id == "T" and result.evidence[0].level == "identical"
    checked = [hit.verification is not None for hit in result.evidence]
    assert checked == [True] + [False] * 12  # the copy alone
    replayed = services.search.run([QueryPhoto(jpeg(photo))], None, SearchOptions(include_weak=True, verify_all=True))
    assert all(hit.verification is not None for hit in replayed.evidence)  # calibration sees every candidate


@pytest.mark.parametrize(("cores", "before_the_model"), [(4, True), (2, False)])
def test_the_photos_features_are_extracted_during_the_forward_pass_where_cores_allow(
    make_services, tiny_embedder, cores, before_the_model
):
    services = make_services(tiny_embedder)
    services.scheduler.policy = SchedulerPolicy(cores=cores, torch_threads=2)  # 4 cores: 2 beside the model's
    events: list[str] = []
    embed, submit = services.scheduler.embed, services.search.verify_pool.submit
    services.scheduler.embed = lambda *args, **kwargs: events.append("forward") or embed(*args, **kwargs)
    services.search.verify_pool.submit = lambda *args, **kwargs: events.append("features") or submit(*args, **kwargs)
    photo = jpeg(render_product(Design(seed=5, palette=factory_palette(5)), size=320))
    run(services, photo, auto_crop=False)
    assert (events.index("features") < events.index("forward")) is before_the_model
