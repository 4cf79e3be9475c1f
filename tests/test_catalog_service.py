"""The catalogue service on SQLite and on the real PostgreSQL server, each test rolled back."""

import numpy as np
import pytest
from sqlalchemy import select

from app.models import Factory, Image, Product
from app.schemas import FactoryCreate, FactoryUpdate, ProductCreate, ProductUpdate
from app.services import catalog
from app.services.errors import ConflictError, InvalidInputError, NotFoundError
from index import FaissIndex


def add_image_row(session, product_id: str, digest: str, dim: int = 8) -> Image:
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
    return image


def test_factory_and_product_lifecycle(db_session):
    catalog.create_factory(db_session, FactoryCreate(id="F1", name="Acme", region="Yiwu", attributes={"iso": 9001}))
    with pytest.raises(ConflictError):
        catalog.create_factory(db_session, FactoryCreate(id="F1", name="Again"))
    catalog.create_product(db_session, ProductCreate(id="P1", factory_id="F1", title="Mug", price=1.5, moq=100))
    with pytest.raises(InvalidInputError, match="does not exist"):
        catalog.create_product(db_session, ProductCreate(id="P2", factory_id="ghost", title="x"))
    catalog.update_factory(db_session, "F1", FactoryUpdate(region=None))
    catalog.update_product(db_session, "P1", ProductUpdate(title="Big mug"))
    assert db_session.get(Factory, "F1").region is None
    assert db_session.get(Factory, "F1").attributes == {"iso": 9001}
    assert (db_session.get(Product, "P1").title, db_session.get(Product, "P1").moq) == ("Big mug", 100)
    assert catalog.count_products(db_session, ["F1"]) == {"F1": 1}


def test_same_bytes_twice_in_a_product_is_refused_by_the_schema(db_session):
    catalog.create_factory(db_session, FactoryCreate(id="F1", name="Acme"))
    catalog.create_product(db_session, ProductCreate(id="P1", factory_id="F1", title="Mug"))
    catalog.create_product(db_session, ProductCreate(id="P2", factory_id="F1", title="Cup"))
    add_image_row(db_session, "P1", "abc")
    add_image_row(db_session, "P2", "abc")  # same bytes in another product: a separate image
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        add_image_row(db_session, "P1", "abc")
    db_session.rollback()


def test_deleting_a_factory_cascades_and_removes_vectors(db_session, tmp_path):
    index = FaissIndex.open(tmp_path, "m", 8)
    catalog.create_factory(db_session, FactoryCreate(id="F1", name="Acme"))
    catalog.create_factory(db_session, FactoryCreate(id="F2", name="Other"))
    catalog.create_product(db_session, ProductCreate(id="P1", factory_id="F1", title="Mug"))
    catalog.create_product(db_session, ProductCreate(id="P2", factory_id="F2", title="Cup"))
    ids = [add_image_row(db_session, p, d).id for p, d in (("P1", "a"), ("P1", "b"), ("P2", "c"))]
    index.upsert(np.array(ids), np.eye(3, 8, dtype=np.float32))
    assert catalog.delete_factory(db_session, index, "F1") == 2
    assert sorted(index.ids().tolist()) == [ids[2]]
    assert db_session.scalars(select(Image.id)).all() == [ids[2]]
    assert db_session.get(Product, "P1") is None
    with pytest.raises(NotFoundError):
        catalog.delete_factory(db_session, index, "F1")


def test_runtime_ingest_and_search_on_postgres(postgres_url, make_runtime, tiny_embedder, catalogue):
    from app.services.ingest import ingest_manifest
    from app.services.search import search_photo

    runtime = make_runtime(tiny_embedder, database_url=postgres_url)
    assert ingest_manifest(runtime, catalogue).added == 28
    assert ingest_manifest(runtime, catalogue).unchanged == 28
    data = (catalogue.parent / "images" / "F002-P003-1.jpg").read_bytes()
    with runtime.sessions() as session:
        result = search_photo(session, runtime, data, top_k=2)
    assert result.factories[0].factory_id == "F002"  # identical photo: found even by a random-weight model
    assert result.factories[0].matches[0].product_id == "F002-P003"
