"""One contract for every vector store (FAISS in the process, Milvus through Milvus Lite): the same writes give
the same answers. Add, replace, delete (a deleted id is never returned), filters (inside Milvus, as allowed ids
for FAISS: the same results), a restart, and recall against exact search."""

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from index import IndexMismatchError, VectorFields, VectorFilter, VectorIndex, open_index

DIM = 32
# Milvus Lite serves gRPC in this process; grpc leaves the idle threads of the pool it was given when the
# server stops (they end with the process). Everything else must still be stopped.
LINGERING_THREADS = ("ThreadPoolExecutor-",)
REGIONS = ["Yiwu", "Dongguan", "Yongkang", None]
CATEGORIES = ["mug", "toy", "lamp"]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def catalogue(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[VectorFields]]:
    """Clustered vectors (product families), with filter fields that vary independently of them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 20), DIM))
    vectors = unit(centres[rng.integers(0, len(centres), count)] + 0.35 * rng.standard_normal((count, DIM)))
    ids = np.arange(1, count + 1, dtype=np.int64) * 7  # not 0..n-1: ids are database ids
    fields = [
        VectorFields(
            factory_id=f"F{i % 9}",
            region=REGIONS[i % len(REGIONS)],
            category=CATEGORIES[(i // 3) % len(CATEGORIES)],
            price=None if i % 11 == 0 else float(i % 40),
            moq=None if i % 13 == 0 else int(10 * (i % 7)),
        )
        for i in range(count)
    ]
    return ids, vectors, fields


def passes(field: VectorFields, where: VectorFilter) -> bool:
    """The filter's meaning, as the database applies it (a missing value never passes a bound on it)."""
    checks = [
        where.region is None or field.region == where.region,
        where.category is None or field.category == where.category,
        where.min_price is None or (field.price is not None and field.price >= where.min_price),
        where.max_price is None or (field.price is not None and field.price <= where.max_price),
        where.max_moq is None or (field.moq is not None and field.moq <= where.max_moq),
        where.factory_ids is None or field.factory_id in where.factory_ids,
    ]
    return all(checks)


def filtered_search(index: VectorIndex, queries, k, ids, fields, where):
    """What the search pipeline does: `where` for a store that filters itself, the passing ids otherwise."""
    if index.filters_inside:
        return index.search(queries, k, where=where)
    allowed = np.array([i for i, f in zip(ids, fields, strict=True) if passes(f, where)], dtype=np.int64)
    return index.search(queries, k, allowed=allowed)


def exact(queries, ids, vectors, k, keep=None):
    mask = np.ones(len(ids), bool) if keep is None else np.asarray(keep)
    scores = queries @ vectors[mask].T
    order = np.argsort(-scores, axis=1)[:, :k]
    return ids[mask][order]


@pytest.fixture(params=["faiss", "milvus-lite"])
def make_store(request, tmp_path) -> Iterator[Callable[..., VectorIndex]]:
    opened: list[VectorIndex] = []

    def make(embedder: str = "test-model") -> VectorIndex:
        store = "faiss" if request.param == "faiss" else str(tmp_path / "vectors.db")
        index = open_index(tmp_path / "faiss", embedder, DIM, store=store)
        opened.append(index)
        return index

    yield make
    for index in opened:
        index.close()


def test_added_vectors_are_found_nearest_first_and_replaced_in_place(make_store):
    index = make_store()
    ids, vectors, fields = catalogue(200)
    index.upsert(ids, vectors, fields)
    assert len(index) == 200 and sorted(index.ids().tolist()) == ids.tolist()
    scores, found = index.search(vectors[:5], 10)
    assert found.shape == (5, 10) and found[:, 0].tolist() == ids[:5].tolist()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-3) and np.all(np.diff(scores, axis=1) <= 1e-6)
    assert found.tolist() == exact(vectors[:5], ids, vectors, 10).tolist()
    # Upserting an id again replaces its vector (and fields): still one entry, found by its new vector.
    moved = unit(np.random.default_rng(9).standard_normal((1, DIM)))
    index.upsert(ids[:1], moved, [VectorFields(factory_id="F-new")])
    assert len(index) == 200
    assert index.search(moved, 1)[1][0, 0] == ids[0]
    assert index.search(vectors[:1], 1)[1][0, 0] != ids[0]


def test_a_deleted_vector_is_never_returned_and_the_count_is_honest(make_store):
    index = make_store()
    ids, vectors, fields = catalogue(120)
    index.upsert(ids, vectors, fields)
    gone = ids[:40]
    assert index.remove(np.concatenate([gone, [999_999]])) == 40  # an absent id is ignored
    assert index.remove(gone) == 0
    _, found = index.search(vectors[:40], 20)
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    assert len(index) == 80 and set(index.ids().tolist()) == set(ids[40:].tolist())


def test_more_asked_than_stored_comes_back_padded_with_minus_one(make_store):
    index = make_store()
    ids, vectors, fields = catalogue(6)
    index.upsert(ids, vectors, fields)
    _, found = index.search(vectors[:2], 10)
    real = [row[row >= 0].tolist() for row in found]
    assert [sorted(r) for r in real] == [sorted(ids.tolist())] * 2
    assert all(np.all(row[len(r) :] == -1) for row, r in zip(found, real, strict=True))


@pytest.mark.parametrize(
    "where",
    [
        VectorFilter(region="Yiwu"),
        VectorFilter(category="toy", max_price=20.0),
        VectorFilter(min_price=5.0, max_price=9.0, max_moq=30),
        VectorFilter(factory_ids=("F1", "F4")),
        VectorFilter(region="Dongguan", category="lamp", factory_ids=("F1", "F6", "F7")),
    ],
)
def test_a_filter_keeps_exactly_the_nearest_among_what_passes(make_store, where):
    index = make_store()
    ids, vectors, fields = catalogue(600, seed=3)
    index.upsert(ids, vectors, fields)
    keep = [passes(f, where) for f in fields]
    assert 0 < sum(keep) < 300
    queries = vectors[:8]
    _, found = filtered_search(index, queries, 10, ids, fields, where)
    expected = exact(queries, ids, vectors, 10, keep)
    for got, want in zip(found, expected, strict=True):
        got = got[got >= 0]
        assert set(got.tolist()) <= {int(i) for i, k in zip(ids, keep, strict=True) if k}
        assert len(set(got.tolist()) & set(want.tolist())) >= 9  # HNSW may swap a near tie


def test_a_filter_nothing_passes_and_a_hostile_value_find_nothing(make_store):
    index = make_store()
    ids, vectors, fields = catalogue(50)
    index.upsert(ids, vectors, fields)
    for where in (
        VectorFilter(factory_ids=()),
        VectorFilter(region='Yiwu" or factory_id != "'),
        VectorFilter(category='mug\\" or 1 == 1 or "'),
    ):
        _, found = filtered_search(index, vectors[:2], 5, ids, fields, where)
        assert found.size == 0 or np.all(found == -1), where


def test_what_was_written_is_there_after_a_restart(make_store):
    index = make_store()
    ids, vectors, fields = catalogue(150)
    index.upsert(ids, vectors, fields)
    index.remove(ids[:10])
    index.save()
    index.close()
    again = make_store()
    assert len(again) == 140 and set(again.ids().tolist()) == set(ids[10:].tolist())
    assert again.search(vectors[20:21], 1)[1][0, 0] == ids[20]
    where = VectorFilter(region="Yongkang")
    _, found = filtered_search(again, vectors[20:21], 5, ids[10:], fields[10:], where)
    assert all(fields[list(ids).index(i)].region == "Yongkang" for i in found[0] if i >= 0)


def test_recall_against_exact_search(make_store):
    index = make_store()
    ids, vectors, fields = catalogue(4000, seed=5)
    index.upsert(ids, vectors, fields)
    rng = np.random.default_rng(6)
    queries = unit(vectors[rng.integers(0, 4000, 50)] + 0.2 * rng.standard_normal((50, DIM)))
    _, found = index.search(queries, 10)
    truth = exact(queries, ids, vectors, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth.tolist(), strict=True)])
    assert recall >= 0.95, recall


def test_another_model_never_sees_these_vectors(make_store, tmp_path: Path):
    index = make_store()
    ids, vectors, fields = catalogue(20)
    index.upsert(ids, vectors, fields)
    index.save()
    index.close()
    if index.filters_inside:  # Milvus: a collection per model, so another model starts empty
        assert len(make_store("other-model")) == 0
    else:  # FAISS: the directory belongs to its model, and says so
        with pytest.raises(IndexMismatchError, match=r"other-model|test-model"):
            make_store("other-model")
