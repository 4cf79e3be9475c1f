"""Milvus as the vector store: one HNSW collection per model, shared by every API process and worker, with the
catalogue's filter fields (factory, region, category, price, MOQ) stored beside each vector so that a filtered
search is filtered inside Milvus, before its top k, not after it.

The database stays the source of truth: vectors are written here after the database commits, and a search
drops an id the database no longer has. Reads are strongly consistent, so an image acknowledged by one
process is found by a search in any other.
"""

import hashlib
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from index.base import VectorFields, VectorFilter, VectorIndex

MAX_TOP_K = 16_384  # Milvus's limit on a search's k
WRITE_CHUNK = 2_000  # rows per insert call: well under gRPC's message limit for 1,024-d vectors
ID_CHUNK = 1_000  # ids per delete/lookup expression
MISSING = np.finfo(np.float32).min  # the score of an empty slot, as FAISS gives it
CONSISTENCY = "Strong"  # what one process acknowledged, every other process's next search sees


def collection_name(prefix: str, embedder: str, dim: int) -> str:
    """A collection per model: a catalogue re-embedded by another model goes to a collection of its own."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", embedder)[:80]
    digest = hashlib.sha256(embedder.encode()).hexdigest()[:10]
    return f"{prefix}_{slug}_{dim}_{digest}"


def client_uri(store: str) -> str:
    """`milvus://host:port` (or `milvus+https://host:port`) for a Milvus server; a path ending in .db for a
    Milvus Lite file, which one process at a time may open."""
    if store.startswith("milvus://"):
        return "http://" + store.removeprefix("milvus://")
    if store.startswith("milvus+https://"):
        return "https://" + store.removeprefix("milvus+https://")
    if store.endswith(".db"):
        return store
    raise ValueError(f"not a Milvus address: {store!r} (milvus://host:19530, or a Milvus Lite file ending in .db)")


def filter_expression(where: VectorFilter | None, allowed: np.ndarray | None) -> str:
    """A Milvus boolean expression; strings are written as JSON string literals, which Milvus reads the same
    way, so no value can change the expression's meaning."""
    parts: list[str] = []
    if where is not None:
        for name in ("region", "category"):
            if (value := getattr(where, name)) is not None:
                parts.append(f"{name} == {json.dumps(value, ensure_ascii=False)}")
        if where.min_price is not None:
            parts.append(f"price >= {float(where.min_price)!r}")
        if where.max_price is not None:
            parts.append(f"price <= {float(where.max_price)!r}")
        if where.max_moq is not None:
            parts.append(f"moq <= {int(where.max_moq)}")
        if where.factory_ids is not None:
            parts.append(f"factory_id in {json.dumps(list(where.factory_ids), ensure_ascii=False)}")
    if allowed is not None:
        parts.append(f"id in {json.dumps([int(i) for i in allowed])}")
    return " and ".join(parts)


class MilvusIndex(VectorIndex):
    filters_inside = True

    def __init__(
        self,
        store: str,
        embedder: str,
        dim: int,
        *,
        prefix: str = "sourcelens",
        ef: int = 128,
        filtered_ef: int = 4096,
        token: str = "",
        client: MilvusClient | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.dim = dim
        self.ef = ef
        # A filtered search walks the graph wider: Milvus Lite walks each segment's HNSW and then drops what fails
        # the filter, so a filter keeping 1% found 47% of the true top 10 at ef 128 and 99.9% at ef 4096
        # (scripts/bench_scale.py, 200k vectors). Milvus standalone scans a segment exactly once a filter drops
        # most of it, where the wider walk costs little.
        self.filtered_ef = filtered_ef
        self.client = client or MilvusClient(uri=client_uri(store), token=token)
        self.collection = collection_name(prefix, embedder, dim)
        if not self.client.has_collection(self.collection):
            self._create()
        self.client.load_collection(self.collection)

    def _create(self) -> None:
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("factory_id", DataType.VARCHAR, max_length=256)
        schema.add_field("region", DataType.VARCHAR, max_length=1024, nullable=True)
        schema.add_field("category", DataType.VARCHAR, max_length=1024, nullable=True)
        schema.add_field("price", DataType.DOUBLE, nullable=True)
        schema.add_field("moq", DataType.INT64, nullable=True)
        params = self.client.prepare_index_params()
        # HNSW: ~0.98 recall@10 at ef 128 on catalogue-like vectors, no training step, updates in place.
        params.add_index("vector", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 200})
        self.client.create_collection(self.collection, schema=schema, consistency_level=CONSISTENCY)
        # Not pymilvus's own wait, which sleeps half a second before its first look even at an empty collection
        # (whose index is built at once): every new model's collection, and every test's, paid it.
        self.client.create_index(self.collection, params, sync=False)
        self._wait_for_index()

    def _wait_for_index(self, timeout_s: float = 120.0) -> None:
        deadline, pause = time.monotonic() + timeout_s, 0.005
        while (state := self.client.describe_index(self.collection, "vector").get("state")) != "Finished":
            if state == "Failed" or time.monotonic() > deadline:
                raise RuntimeError(f"Milvus could not build the index of {self.collection} (state {state})")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    # --- writes --------------------------------------------------------------------------------------

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, fields: Sequence[VectorFields] | None = None) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(f"expected ({len(ids)}, {self.dim}) vectors, got {vectors.shape}")
        if fields is None or len(fields) != len(ids):
            raise ValueError("a Milvus upsert needs the catalogue fields of every vector (factory, region, …)")
        rows = [_row(int(i), vector, f) for i, vector, f in zip(ids, vectors, fields, strict=True)]
        for start in range(0, len(rows), WRITE_CHUNK):
            self.client.upsert(self.collection, rows[start : start + WRITE_CHUNK])

    def remove(self, ids: np.ndarray) -> int:
        removed = 0
        wanted = [int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1)]
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            present = [row["id"] for row in self._query(f"id in {json.dumps(chunk)}", ["id"])]
            if present:
                self.client.delete(self.collection, ids=present)
            removed += len(present)
        return removed

    # --- reads ---------------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, where: VectorFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        width = max(0, min(k, MAX_TOP_K))
        empty = (allowed is not None and len(allowed) == 0) or (where is not None and where.factory_ids == ())
        if width == 0 or empty or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        ef = max(self.filtered_ef if allowed is not None or where is not None else self.ef, width)
        found = self.client.search(
            self.collection,
            data=list(queries),
            limit=width,
            filter=filter_expression(where, allowed),
            search_params={"metric_type": "IP", "params": {"ef": ef}},
            consistency_level=CONSISTENCY,
        )
        scores = np.full((len(queries), width), MISSING, np.float32)
        ids = np.full((len(queries), width), -1, np.int64)
        for row, hits in enumerate(found):
            for col, hit in enumerate(hits[:width]):
                scores[row, col], ids[row, col] = hit["distance"], hit["id"]
        return scores, ids

    def ids(self) -> np.ndarray:
        iterator = self.client.query_iterator(self.collection, batch_size=10_000, filter="", output_fields=["id"])
        found: list[int] = []
        try:
            while batch := iterator.next():
                found.extend(row["id"] for row in batch)
        finally:
            iterator.close()
        return np.array(sorted(found), dtype=np.int64)

    def __len__(self) -> int:
        rows = self._query("", ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _query(self, expression: str, fields: list[str]) -> list[dict[str, Any]]:
        return list(
            self.client.query(self.collection, filter=expression, output_fields=fields, consistency_level=CONSISTENCY)
        )

    @property
    def dirty(self) -> bool:
        return False  # Milvus keeps what it acknowledged; nothing waits in this process

    def save(self) -> None:
        """Nothing to write: Milvus persists each acknowledged write itself."""

    def describe(self) -> str:
        return (
            f"milvus hnsw (M 16, ef {self.ef}, filtered ef {self.filtered_ef}), collection {self.collection} "
            f"at {_display(self.store)}"
        )

    def close(self) -> None:
        self.client.close()
        if client_uri(self.store) == self.store:  # Milvus Lite runs in this process: stop its server threads
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.store)


def _row(image_id: int, vector: np.ndarray, fields: VectorFields) -> dict[str, Any]:
    return {
        "id": image_id,
        "vector": vector,
        "factory_id": fields.factory_id,
        "region": fields.region,
        "category": fields.category,
        "price": None if fields.price is None else float(fields.price),
        "moq": None if fields.moq is None else int(fields.moq),
    }


def _display(store: str) -> str:
    """The address without credentials, for logs and /readyz."""
    return re.sub(r"//[^@/]*@", "//", store)
