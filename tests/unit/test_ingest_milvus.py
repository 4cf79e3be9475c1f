"""Ingest into Milvus (Milvus Lite here): each vector arrives with its catalogue fields, so a filtered search
inside Milvus keeps exactly the images whose product and factory pass."""

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from app.catalog.models import Factory, Product
from app.catalog.models import Image as ImageRow
from index import VectorFilter

# Milvus Lite serves gRPC in this process; see tests/unit/test_vector_store_contract.py.
LINGERING_THREADS = ("ThreadPoolExecutor-",)


def test_ingested_vectors_carry_their_fields_into_milvus(make_services, tiny_embedder, catalogue, tmp_path: Path):
    services = make_services(tiny_embedder, vector_store=str(tmp_path / "vectors.db"))
    assert services.ingest.ingest_manifest(catalogue).added == 28
    with services.sessions() as session:
        query = select(ImageRow.id, Factory.region, Product.category).select_from(ImageRow)
        rows = session.execute(query.join(Product).join(Factory)).all()
    region, category = rows[0].region, rows[0].category
    wanted = {row.id for row in rows if row.region == region and row.category == category}
    probe = np.ones((1, services.model.dim), np.float32) / np.sqrt(services.model.dim)
    _, found = services.index.search(probe, 28, where=VectorFilter(region=region, category=category))
    assert set(found[0][found[0] >= 0].tolist()) == wanted


def test_a_collection_whose_index_cannot_be_built_is_an_error_not_a_store(tmp_path: Path, monkeypatch):
    from pymilvus import MilvusClient

    from index.milvus_index import MilvusIndex

    client = MilvusClient(uri=str(tmp_path / "vectors.db"))
    states = iter(["InProgress", "InProgress", "Failed"])
    monkeypatch.setattr(client, "describe_index", lambda *_a, **_k: {"state": next(states)})
    try:
        with pytest.raises(RuntimeError, match=r"could not build the index.*Failed"):
            MilvusIndex(str(tmp_path / "vectors.db"), "test-model", 8, client=client)
        assert next(states, "read to the end") == "read to the end"  # it waited through both InProgress
    finally:
        client.close()
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(tmp_path / "vectors.db"))
