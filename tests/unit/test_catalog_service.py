"""The catalogue service on SQLite and on the real PostgreSQL server, each test rolled back."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from helpers import jpeg_bytes
from sqlalchemy import create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

import app.catalog.index_sync as index_sync
from app.catalog.index_sync import (
    check_catalogue_embedder,
    drop_if_deleted,
    fields_for,
    reconcile,
    refresh_fields,
    stored_embedder,
    vector_from_bytes,
    vector_to_bytes,
)
from app.catalog.media import MediaStore
from app.catalog.models import Factory, Image, Product
from app.catalog.service import CatalogService, content_hash
from app.catalog.types import NewFactory, NewProduct, Readiness
from app.core.access import Principal, Role
from app.core.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.search.options import QueryPhoto, SearchOptions
from embeddings import ImageDecoder, ModelScheduler, NotAnImage, SchedulerPolicy
from index import FaissIndex, IndexMismatchError, VectorFields

ADMIN = Principal.system()


@pytest.fixture
def scheduler(tiny_embedder):
    scheduler = ModelScheduler(SchedulerPolicy(cores=2))
    scheduler.start(tiny_embedder)
    yield scheduler
    scheduler.close()


@pytest.fixture
def catalog(rolled_back_sessions, tmp_path, tiny_embedder, scheduler):
    return CatalogService(
        sessions=rolled_back_sessions,
        index=FaissIndex.open(tmp_path / "index", tiny_embedder.name, tiny_embedder.dim),
        media=MediaStore(tmp_path / "media"),
        decoder=ImageDecoder(max_bytes=2_000_000, max_pixels=10_000_000),
        preprocess=tiny_embedder.preprocess,
        scheduler=scheduler,
        model_name=tiny_embedder.name,
    )


def add_image_row(sessions, product_id: str, digest: str, dim: int = 8) -> int:
    with sessions() as session:
        image = Image(
            product_id=product_id,
            content_hash=digest,
            source="t",
            width=1,
            height=1,
            embedder="m",
            embedding=np.ones(dim, np.float32).tobytes(),
        )
        session.add(image)
        session.commit()
        return image.id


def test_factory_and_product_lifecycle(catalog, rolled_back_sessions):
    created = catalog.create_factory(NewFactory(id="F1", name="Acme", region="Yiwu", attributes={"iso": 9001}), ADMIN)
    assert (created.id, created.region, created.product_count) == ("F1", "Yiwu", 0)
    with pytest.raises(ConflictError):
        catalog.create_factory(NewFactory(id="F1", name="Again"), ADMIN)
    product = catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug", price=1.5, moq=100), ADMIN)
    assert (product.factory_id, product.image_ids) == ("F1", [])
    with pytest.raises(InvalidInputError, match="does not exist"):
        catalog.create_product(NewProduct(id="P2", factory_id="ghost", title="x"), ADMIN)
    with pytest.raises(ConflictError):
        catalog.create_product(NewProduct(id="P1", factory_id="F1", title="again"), ADMIN)
    # A null clears the region, an absent field keeps what is stored; a null name is ignored.
    updated = catalog.update_factory("F1", {"region": None, "name": None}, ADMIN)
    assert (updated.name, updated.region, updated.attributes, updated.product_count) == ("Acme", None, {"iso": 9001}, 1)
    renamed = catalog.update_product("P1", {"title": "Big mug", "moq": None}, ADMIN)
    assert (renamed.title, renamed.moq, renamed.price) == ("Big mug", None, 1.5)
    assert catalog.update_product("P1", {"price": None, "title": None}, ADMIN).title == "Big mug"
    with rolled_back_sessions() as session:
        assert session.get(Product, "P1").price is None and session.get(Factory, "F1").region is None
    assert catalog.get_factory("F1").product_count == 1
    with pytest.raises(NotFoundError, match="factory 'nope' not found"):
        catalog.get_factory("nope")
    with pytest.raises(NotFoundError, match="product 'nope' not found"):
        catalog.update_product("nope", {"title": "x"}, ADMIN)


def test_listings_page_and_filter(catalog):
    for factory_id in ("F2", "F1", "F3"):
        catalog.create_factory(NewFactory(id=factory_id, name=factory_id), ADMIN)
    for product_id, factory_id in (("P3", "F1"), ("P1", "F1"), ("P2", "F2")):
        catalog.create_product(NewProduct(id=product_id, factory_id=factory_id, title=product_id), ADMIN)
    assert [f.id for f in catalog.list_factories()] == ["F1", "F2", "F3"]
    assert [(f.id, f.product_count) for f in catalog.list_factories(offset=1, limit=1)] == [("F2", 1)]
    assert [p.id for p in catalog.list_products()] == ["P1", "P2", "P3"]
    assert [p.id for p in catalog.list_products(factory_id="F1", offset=1)] == ["P3"]
    assert [p.id for p in catalog.list_products(limit=2)] == ["P1", "P2"]


def test_same_bytes_twice_in_a_product_is_refused_by_the_schema(catalog, rolled_back_sessions):
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), ADMIN)
    catalog.create_product(NewProduct(id="P2", factory_id="F1", title="Cup"), ADMIN)
    add_image_row(rolled_back_sessions, "P1", "abc")
    add_image_row(rolled_back_sessions, "P2", "abc")  # same bytes in another product: a separate image
    with pytest.raises(IntegrityError):
        add_image_row(rolled_back_sessions, "P1", "abc")


def test_deleting_a_factory_cascades_and_removes_vectors(catalog, rolled_back_sessions):
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_factory(NewFactory(id="F2", name="Other"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), ADMIN)
    catalog.create_product(NewProduct(id="P2", factory_id="F2", title="Cup"), ADMIN)
    ids = [add_image_row(rolled_back_sessions, p, d) for p, d in (("P1", "a"), ("P1", "b"), ("P2", "c"))]
    catalog.index.upsert(np.array(ids), np.eye(3, catalog.index.dim, dtype=np.float32))
    assert catalog.get_product("P1").image_ids == sorted(ids[:2])
    assert catalog.delete_factory("F1", ADMIN) == 2
    assert sorted(catalog.index.ids().tolist()) == [ids[2]]
    with rolled_back_sessions() as session:
        assert session.scalars(select(Image.id)).all() == [ids[2]]
        assert session.get(Product, "P1") is None
    with pytest.raises(NotFoundError):
        catalog.delete_factory("F1", ADMIN)
    assert catalog.delete_product("P2", ADMIN) == 1 and len(catalog.index) == 0


def test_an_uploaded_image_is_embedded_stored_and_indexed_once(catalog):
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), ADMIN)
    photo = jpeg_bytes(render_product(Design(seed=3, palette=factory_palette(3)), size=400))
    image, created = catalog.add_image("P1", photo, "upload:mug.jpg", ADMIN)
    assert created and (image.product_id, image.width, image.height, image.source) == ("P1", 400, 400, "upload:mug.jpg")
    assert catalog.image_file(image.id).exists() and [i.id for i in catalog.product_images("P1")] == [image.id]
    assert catalog.index.ids().tolist() == [image.id]
    again, created_again = catalog.add_image("P1", photo, "upload:again.jpg", ADMIN)
    assert (again.id, created_again) == (image.id, False)  # the stored image: nothing embedded or indexed twice
    assert len(catalog.index) == 1
    with pytest.raises(NotAnImage):
        catalog.add_image("P1", b"not an image at all", "upload:x", ADMIN)
    with pytest.raises(NotFoundError):
        catalog.add_image("nope", photo, "upload:x", ADMIN)
    assert len(catalog.index) == 1 and catalog.get_product("P1").image_ids == [image.id]
    catalog.delete_image(image.id, ADMIN)
    assert len(catalog.index) == 0 and catalog.product_images("P1") == []
    with pytest.raises(NotFoundError, match=f"image {image.id} not found"):
        catalog.get_image(image.id)
    assert (catalog.index_status().images, catalog.index_status().description) == (0, "flat (exact)")


def test_a_missing_stored_copy_is_a_clear_not_found(catalog):
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), ADMIN)
    photo = jpeg_bytes(render_product(Design(seed=4, palette=factory_palette(4))))
    image, _ = catalog.add_image("P1", photo, "u", ADMIN)
    catalog.image_file(image.id).unlink()
    with pytest.raises(NotFoundError, match="stored copy"):
        catalog.image_file(image.id)


def test_a_factory_key_changes_only_its_own_factories(catalog):
    mine = Principal(Role.FACTORY, frozenset({"F1"}), key_id=7, name="acme portal")
    search_key = Principal(Role.SEARCH, key_id=8)
    catalog.create_factory(NewFactory(id="F1", name="Acme"), mine)
    catalog.create_factory(NewFactory(id="F2", name="Other"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), mine)
    catalog.create_product(NewProduct(id="P2", factory_id="F2", title="Cup"), ADMIN)
    photo = jpeg_bytes(render_product(Design(seed=5, palette=factory_palette(5))))
    image, _ = catalog.add_image("P1", photo, "u", mine)
    other_image, _ = catalog.add_image("P2", photo, "u", ADMIN)
    refused = [
        lambda: catalog.create_factory(NewFactory(id="F3", name="Not mine"), mine),
        lambda: catalog.update_factory("F2", {"name": "Mine now"}, mine),
        lambda: catalog.delete_factory("F2", mine),
        lambda: catalog.create_product(NewProduct(id="P3", factory_id="F2", title="x"), mine),
        lambda: catalog.update_product("P2", {"price": 0.01}, mine),
        lambda: catalog.delete_product("P2", mine),
        lambda: catalog.add_image("P2", b"whatever", "u", mine),
        lambda: catalog.delete_image(other_image.id, mine),
        lambda: catalog.update_factory("F1", {"name": "x"}, search_key),
        lambda: catalog.update_factory("F1", {"name": "x"}, Principal(None)),
    ]
    for attempt in refused:
        with pytest.raises(ForbiddenError):
            attempt()
    assert catalog.get_product("P2").price is None and catalog.get_factory("F2").name == "Other"
    assert len(catalog.index) == 2 and catalog.list_products(factory_id="F2")[0].image_ids == [other_image.id]
    assert catalog.update_product("P1", {"price": 2.0}, mine).price == 2.0
    catalog.delete_image(image.id, mine)
    assert catalog.delete_factory("F1", mine) == 0 and len(catalog.index) == 1


def test_a_new_product_keeps_every_field_it_was_given(catalog):
    before = datetime.now(UTC) - timedelta(seconds=1)
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_factory(NewFactory(id="F2", name="Empty"), ADMIN)
    new = NewProduct(
        id="P1", factory_id="F1", title="Mug", category="mugs", price=1.5, moq=100, attributes={"glaze": "matte"}
    )
    for product in (catalog.create_product(new, ADMIN), catalog.get_product("P1"), catalog.list_products()[0]):
        assert (product.title, product.category, product.price, product.moq) == ("Mug", "mugs", 1.5, 100)
        assert product.attributes == {"glaze": "matte"}
        assert before <= product.created_at <= datetime.now(UTC)
    assert catalog.get_factory("F1").product_count == 1
    assert catalog.get_factory("F2").product_count == 0  # a count, not "unknown", for a factory with no products
    assert [(f.id, f.product_count) for f in catalog.list_factories()] == [("F1", 1), ("F2", 0)]


def test_attributes_past_the_limit_are_refused_on_update_too(catalog):
    catalog.create_factory(NewFactory(id="F1", name="Acme", attributes={"iso": 9001}), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug", attributes={"glaze": "matte"}), ADMIN)
    too_big = {"notes": "x" * (catalog.max_attributes_bytes + 1)}
    with pytest.raises(InvalidInputError, match=r"^attributes is .* bytes of JSON"):
        catalog.update_factory("F1", {"attributes": too_big}, ADMIN)
    with pytest.raises(InvalidInputError, match=r"^attributes is .* bytes of JSON"):
        catalog.update_product("P1", {"attributes": too_big}, ADMIN)
    assert catalog.get_factory("F1").attributes == {"iso": 9001}
    assert catalog.get_product("P1").attributes == {"glaze": "matte"}


def test_an_uploaded_image_stores_the_vector_it_indexed(catalog, rolled_back_sessions):
    """The stored embedding is what a restart rebuilds the index from, and what "more like this" searches with."""
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), ADMIN)
    image, _ = catalog.add_image(
        "P1", jpeg_bytes(render_product(Design(seed=6, palette=factory_palette(6)))), "u", ADMIN
    )
    with rolled_back_sessions() as session:
        stored = vector_from_bytes(session.get(Image, image.id).embedding)
    assert stored.shape == (catalog.index.dim,)
    scores, ids = catalog.index.search(stored[None, :].astype(np.float32), 1)
    assert ids[0, 0] == image.id and scores[0, 0] == pytest.approx(1.0, abs=1e-4)


def test_the_same_photo_added_twice_at_once_is_stored_once(catalog, rolled_back_sessions, monkeypatch):
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), ADMIN)
    photo = jpeg_bytes(render_product(Design(seed=7, palette=factory_palette(7))))
    stored_meanwhile: list[int] = []

    class DecoderWhileAnotherRequestStoresIt:
        def decode(self, data):
            loaded = decoder.decode(data)  # while this request decodes and embeds, another stores the same bytes
            stored_meanwhile.append(add_image_row(rolled_back_sessions, "P1", content_hash(data), catalog.index.dim))
            return loaded

    decoder = catalog.decoder
    monkeypatch.setattr(catalog, "decoder", DecoderWhileAnotherRequestStoresIt())
    image, created = catalog.add_image("P1", photo, "upload:mug.jpg", ADMIN)
    assert (image.id, image.product_id, created) == (stored_meanwhile[0], "P1", False)
    assert catalog.get_product("P1").image_ids == [image.id] and len(catalog.index) == 0  # the other request indexes


def test_readiness_counts_images_and_vectors_and_notices_a_dead_database(catalog, rolled_back_sessions):
    assert catalog.readiness() == Readiness(database=True, images=0, vectors=0)
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), ADMIN)
    ids = [add_image_row(rolled_back_sessions, "P1", digest) for digest in ("a", "b")]
    catalog.index.upsert(np.array(ids[:1]), np.eye(1, catalog.index.dim, dtype=np.float32))
    ready = catalog.readiness()
    assert ready == Readiness(database=True, images=2, vectors=1) and not ready.index_in_step
    catalog.sessions = sessionmaker(bind=create_engine("sqlite:////nonexistent-dir/catalogue.db"))
    assert catalog.readiness() == Readiness(database=False, images=0, vectors=1)


class FilteringStore:
    """What index sync hands a store that filters by itself (as Milvus does): each write is recorded."""

    filters_inside = True

    def __init__(self) -> None:
        self.written: dict[int, tuple[list[float], VectorFields]] = {}
        self.removed: list[int] = []

    def upsert(self, ids, vectors, fields=None) -> None:
        for image_id, vector, field in zip(ids.tolist(), vectors, fields, strict=True):
            self.written[image_id] = (vector.tolist(), field)

    def remove(self, ids) -> int:
        self.removed += ids.tolist()
        return len(ids)

    def ids(self):
        return np.array(sorted(self.written), dtype=np.int64)


def test_a_store_that_filters_by_itself_gets_each_images_catalogue_fields(catalog, rolled_back_sessions, monkeypatch):
    monkeypatch.setattr(index_sync, "CHUNK", 2)  # several chunks from a few images
    catalog.create_factory(NewFactory(id="F1", name="Acme", region="Yiwu"), ADMIN)
    catalog.create_factory(NewFactory(id="F2", name="Other"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug", category="mugs", price=1.5, moq=10), ADMIN)
    catalog.create_product(NewProduct(id="P2", factory_id="F2", title="Cup"), ADMIN)
    ids = [
        add_image_row(rolled_back_sessions, p, d, dim=2)
        for p, d in (("P1", "a"), ("P1", "b"), ("P1", "c"), ("P2", "d"))
    ]
    store = FilteringStore()
    with rolled_back_sessions() as session:
        assert reconcile(session, store).added == 4 and sorted(store.written) == ids
        assert {store.written[i][1] for i in ids[:3]} == {VectorFields("F1", "Yiwu", "mugs", 1.5, 10)}
        assert store.written[ids[3]] == ([1.0, 1.0], VectorFields("F2"))
        # An image deleted meanwhile gets a placeholder, and is taken out again once its write is done.
        assert fields_for(session, store, np.array([ids[3], 999])) == [VectorFields("F2"), VectorFields(factory_id="")]
        drop_if_deleted(session, store, np.array([ids[3], 999]))
        assert store.removed == [999]
    catalog.update_product("P1", {"price": 2.0}, ADMIN)
    store.written.clear()
    with rolled_back_sessions() as session:
        refresh_fields(session, store, ids[:3])
    assert sorted(store.written) == ids[:3] and {f.price for _, f in store.written.values()} == {2.0}


def test_a_catalogue_embedded_by_another_model_is_refused_by_name(catalog, rolled_back_sessions):
    catalog.create_factory(NewFactory(id="F1", name="Acme"), ADMIN)
    catalog.create_product(NewProduct(id="P1", factory_id="F1", title="Mug"), ADMIN)
    with rolled_back_sessions() as session, pytest.raises(InvalidInputError, match="no images yet"):
        stored_embedder(session)  # nothing to move to another store
    for digest in ("a", "b"):
        add_image_row(rolled_back_sessions, "P1", digest)  # embedded by model "m"
    with rolled_back_sessions() as session:
        assert stored_embedder(session) == ("m", 8)  # the model and the dimension of a stored vector
    with rolled_back_sessions() as session:
        session.add(
            Image(product_id="P1", content_hash="c", source="t", width=1, height=1, embedder="n", embedding=b"")
        )
        session.commit()
        with pytest.raises(IndexMismatchError) as refused:
            check_catalogue_embedder(session, "clip")
        found = str(refused.value).split("(", 1)[1].split(")", 1)[0]
        assert sorted(found.split(", ")) == ["1 by n", "2 by m"] and "configured model is clip" in str(refused.value)
    assert vector_from_bytes(vector_to_bytes(np.array([1.5, -2.0]))).tolist() == [1.5, -2.0]  # stored as float32


def test_ingest_and_search_on_postgres(empty_postgres_url, make_services, tiny_embedder, catalogue):
    # A database of its own: this test commits, and the rolled-back tests above expect an empty catalogue
    # whatever order they run in (mutmut runs them in its own order).
    services = make_services(tiny_embedder, database_url=empty_postgres_url)
    assert services.ingest.ingest_manifest(catalogue).added == 28
    assert services.ingest.ingest_manifest(catalogue).unchanged == 28
    data = (catalogue.parent / "images" / "F002-P003-1.jpg").read_bytes()
    result = services.search.run([QueryPhoto(data)], None, SearchOptions(top_k=2))
    assert result.factories[0].factory_id == "F002"  # identical photo: found even by a random-weight model
    assert result.factories[0].matches[0].product_id == "F002-P003"
