"""FAISS index: upserts, deletes, persistence, atomic saves, embedder mismatch, concurrent use."""

import json
import logging
import threading

import numpy as np
import pytest

from index import FaissIndex, IndexMismatchError


def unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_search_returns_nearest_ids_best_first(tmp_path):
    index = FaissIndex.open(tmp_path, "m", 16)
    vectors = unit(50)
    index.upsert(np.arange(100, 150), vectors)
    scores, ids = index.search(vectors[7], 3)
    assert ids[0, 0] == 107 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_upsert_replaces_and_remove_deletes(tmp_path):
    index = FaissIndex.open(tmp_path, "m", 16)
    vectors = unit(10)
    index.upsert(np.arange(10), vectors)
    index.upsert(np.array([3]), vectors[[5]])  # image 3 now looks like image 5
    assert len(index) == 10
    _, ids = index.search(vectors[3], 1)
    assert ids[0, 0] != 3
    assert index.remove(np.array([5, 3, 999])) == 2
    assert sorted(index.ids().tolist()) == [0, 1, 2, 4, 6, 7, 8, 9]


def test_k_larger_than_index_and_empty_index(tmp_path):
    index = FaissIndex.open(tmp_path, "m", 16)
    scores, ids = index.search(unit(1)[0], 5)
    assert ids.shape == (1, 0) and scores.shape == (1, 0)
    index.upsert(np.array([1, 2]), unit(2))
    _, ids = index.search(unit(1)[0], 5)
    assert sorted(ids[0].tolist()) == [1, 2]


def test_wrong_vector_shape_is_refused(tmp_path):
    index = FaissIndex.open(tmp_path, "m", 16)
    with pytest.raises(ValueError, match="expected"):
        index.upsert(np.arange(3), unit(3, dim=8))


def test_saved_index_reopens_with_same_content(tmp_path):
    index = FaissIndex.open(tmp_path, "model-a", 16)
    vectors = unit(20)
    index.upsert(np.arange(20), vectors)
    index.remove(np.array([4]))
    index.save()
    reopened = FaissIndex.open(tmp_path, "model-a", 16)
    assert sorted(reopened.ids().tolist()) == sorted(index.ids().tolist())
    _, ids = reopened.search(vectors[9], 1)
    assert ids[0, 0] == 9


def test_save_switches_generations_atomically(tmp_path):
    index = FaissIndex.open(tmp_path, "model-a", 16)
    index.upsert(np.arange(5), unit(5))
    index.save()
    index.upsert(np.arange(5, 8), unit(3, seed=1))
    index.save()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["embedder"] == "model-a" and meta["count"] == 8
    assert [p.name for p in tmp_path.glob("faiss-*.index")] == [meta["file"]]  # old generation cleaned up
    # A fresh index object over the same directory never overwrites the live file.
    fresh = FaissIndex(tmp_path, "model-a", 16)
    fresh.save()
    assert json.loads((tmp_path / "meta.json").read_text())["generation"] == meta["generation"] + 1


def test_opening_with_another_embedder_names_reindex(tmp_path):
    FaissIndex.open(tmp_path, "effnet-lite0", 1280).save()
    with pytest.raises(IndexMismatchError, match="sourcelens reindex"):
        FaissIndex.open(tmp_path, "openclip:ViT-B-32:laion2b_s34b_b79k", 512)
    with pytest.raises(IndexMismatchError, match="dim 1280"):
        FaissIndex.open(tmp_path, "effnet-lite0", 64)


def test_concurrent_searches_and_writes_stay_consistent(tmp_path):
    index = FaissIndex.open(tmp_path, "m", 16)
    base = unit(200)
    index.upsert(np.arange(200), base)
    errors: list[str] = []

    def searcher() -> None:
        for i in range(300):
            scores, ids = index.search(base[i % 100], 1)  # ids < 100 are never touched by the writer
            if ids[0, 0] != i % 100 or scores[0, 0] < 0.999:
                errors.append(f"query {i % 100} → {ids[0, 0]}")

    def writer() -> None:
        extra = unit(300, seed=5)
        for i in range(300):
            index.upsert(np.array([1000 + i]), extra[[i]])
            if i % 3 == 0:
                index.remove(np.array([100 + i % 100]))

    threads = [threading.Thread(target=searcher) for _ in range(3)] + [threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(index) == len(set(index.ids().tolist()))


def clustered_unit(rows: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, rows)] + rng.standard_normal((rows, dim)).astype(np.float32) * 0.5
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_ivf_index_searches_removes_and_reopens_memory_mapped(tmp_path):
    vectors = clustered_unit(6000)
    ids = np.arange(1, 6001)
    index = FaissIndex.build(tmp_path, "m", 32, "ivf-sq8", ids, vectors)
    assert index.kind == "ivf-sq8" and "lists" in index.describe()
    _, found = index.search(vectors[:200], 1)
    assert np.mean(found[:, 0] == ids[:200]) > 0.95
    assert index.remove(np.array([1, 2, 99999])) == 2
    index.save()

    reopened = FaissIndex.open(tmp_path, "m", 32, "ivf-sq8")
    assert len(reopened) == 5998 and reopened.kind == "ivf-sq8"
    assert 1 not in set(reopened.ids().tolist())
    reopened.upsert(np.array([1]), vectors[[0]])  # the first write copies the mapped lists into memory
    _, found = reopened.search(vectors[0], 1)
    assert found[0, 0] == 1 and len(reopened) == 5999


def test_preload_reads_a_mapped_index_into_memory_without_changing_it(tmp_path):
    vectors = clustered_unit(6000)
    FaissIndex.build(tmp_path, "m", 32, "ivf-sq8", np.arange(1, 6001), vectors).save()
    generation = json.loads((tmp_path / "meta.json").read_text())["generation"]
    index = FaissIndex.open(tmp_path, "m", 32, "ivf-sq8")
    assert index.describe().endswith("memory-mapped")
    mapped = index.search(vectors[:50], 5)
    assert index.preload() and not index.preload()  # once only
    assert "memory-mapped" not in index.describe()
    in_memory = index.search(vectors[:50], 5)
    assert np.array_equal(mapped[1], in_memory[1]) and np.allclose(mapped[0], in_memory[0])
    index.save()  # still what the file holds: nothing is written
    assert json.loads((tmp_path / "meta.json").read_text())["generation"] == generation
    index.remove(np.array([1]))
    index.save()
    assert json.loads((tmp_path / "meta.json").read_text())["generation"] == generation + 1


def test_preload_after_a_write_leaves_the_written_index(tmp_path):
    vectors = clustered_unit(6000)
    FaissIndex.build(tmp_path, "m", 32, "ivf-sq8", np.arange(1, 6001), vectors).save()
    index = FaissIndex.open(tmp_path, "m", 32, "ivf-sq8")
    index.remove(np.array([1, 2]))  # the first write read the lists into memory already
    assert not index.preload()
    assert len(index) == 5998 and 1 not in set(index.ids().tolist())


def test_search_threads_apply_in_every_calling_thread(tmp_path):
    faiss = pytest.importorskip("faiss")
    index = FaissIndex.open(tmp_path, "m", 16, search_threads=1)
    index.upsert(np.arange(10), unit(10))
    seen: list[int] = []

    def search_and_look() -> None:
        index.search(unit(1, seed=3), 2)
        seen.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=search_and_look)
    worker.start()
    worker.join()
    assert seen == [1]  # a thread that never set it would see one per core


def test_auto_policy_rebuilds_as_ivf_while_writes_continue(tmp_path):
    vectors = clustered_unit(3000)
    index = FaissIndex.open(tmp_path, "m", 32, "auto", ivf_threshold=2000)
    index.upsert(np.arange(1, 2501), vectors[:2500])
    assert index.kind == "flat" and index.wants_rebuild
    index.begin_rebuild()
    snapshot_ids, snapshot = index.ids(), vectors[:2500]  # taken after logging started
    index.upsert(np.arange(2501, 3001), vectors[2500:])  # written while the IVF index is being built
    index.remove(np.array([5, 6, 7]))
    index.finish_rebuild(np.sort(snapshot_ids), snapshot)
    assert index.kind == "ivf-sq8" and not index.wants_rebuild
    assert sorted(index.ids().tolist()) == [i for i in range(1, 3001) if i not in (5, 6, 7)]
    _, found = index.search(vectors[2990], 1)
    assert found[0, 0] == 2991


@pytest.mark.parametrize("kind", ["flat", "flat-fp16", "ivf-sq8"])
def test_concurrent_writes_and_searches_on_each_kind(tmp_path, kind):
    vectors = clustered_unit(4000, seed=3)
    index = FaissIndex.build(tmp_path, "m", 32, kind, np.arange(4000), vectors)
    errors: list[str] = []

    def searcher() -> None:
        for i in range(200):
            _, ids = index.search(vectors[i], 1)  # ids < 1000 are never touched by the writer
            if ids[0, 0] != i and not np.allclose(vectors[ids[0, 0]], vectors[i], atol=1e-2):
                errors.append(f"{i} → {ids[0, 0]}")

    def writer() -> None:
        extra = clustered_unit(300, seed=4)
        for i in range(300):
            index.upsert(np.array([10_000 + i]), extra[[i]])
            index.remove(np.array([1000 + i]))

    threads = [threading.Thread(target=searcher) for _ in range(2)] + [threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(index) == 4000 and len(set(index.ids().tolist())) == 4000


@pytest.mark.parametrize("kind", ["flat", "flat-fp16", "ivf-sq8"])
def test_filtered_index_search_returns_only_allowed_ids(tmp_path, kind):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaissIndex.build(tmp_path, "test", 16, kind, np.arange(3000, dtype=np.int64), vectors)
    assert index.kind == kind
    allowed = np.array([5, 77, 1500, 2999], dtype=np.int64)
    scores, ids = index.search(vectors[1500], 10, allowed)
    assert set(ids[0][ids[0] >= 0].tolist()) == set(allowed.tolist())  # few allowed: all found, even in IVF
    assert ids[0][0] == 1500 and scores[0][0] == pytest.approx(1.0, abs=0.02)
    assert index.search(vectors[0], 5, np.array([], dtype=np.int64))[1].shape == (1, 0)


def test_fresh_index_is_clean_and_empty_results_keep_their_dtypes(tmp_path):
    index = FaissIndex.open(tmp_path, "m", 16)
    assert index.dirty is False
    scores, ids = index.search(unit(2), 3)  # empty index
    assert scores.shape == ids.shape == (2, 0) and scores.dtype == np.float32 and ids.dtype == np.int64
    index.upsert(np.arange(5), unit(5))
    assert index.dirty is True
    scores, ids = index.search(unit(2), 3, np.array([], dtype=np.int64))  # nothing allowed
    assert scores.shape == ids.shape == (2, 0) and scores.dtype == np.float32 and ids.dtype == np.int64
    index.save()
    assert index.dirty is False


def test_auto_policy_wants_ivf_from_exactly_the_threshold(tmp_path):
    index = FaissIndex.open(tmp_path, "m", 16, "auto", ivf_threshold=10)
    index.upsert(np.arange(9), unit(9))
    assert not index.wants_rebuild  # one short
    index.upsert(np.array([9]), unit(1, seed=1))
    assert index.wants_rebuild  # 10 of 10
    assert FaissIndex.build(tmp_path / "b", "m", 32, "auto", np.arange(999), clustered_unit(999), 1000).kind == "flat"
    built = FaissIndex.build(tmp_path / "c", "m", 32, "auto", np.arange(1000), clustered_unit(1000), 1000)
    assert built.kind == "ivf-sq8" and len(built) == 1000


def test_auto_policy_moves_from_flat_to_fp16_to_ivf_as_the_catalogue_grows(tmp_path):
    vectors = clustered_unit(2500)
    index = FaissIndex.open(tmp_path, "m", 32, "auto", ivf_threshold=2000, fp16_threshold=100)
    index.upsert(np.arange(99), vectors[:99])
    assert index.kind == "flat" and not index.wants_rebuild  # one short
    index.upsert(np.array([99]), vectors[[99]])
    assert index.wants_rebuild
    index.begin_rebuild()
    index.upsert(np.array([100]), vectors[[100]])  # written while the fp16 index is built
    index.finish_rebuild(np.arange(100), vectors[:100])
    assert index.kind == "flat-fp16" and not index.wants_rebuild and len(index) == 101
    assert index.describe() == "flat-fp16 (every vector, 16-bit)"
    index.upsert(np.arange(101, 2000), vectors[101:2000])
    assert index.wants_rebuild  # on to IVF at its threshold
    index.begin_rebuild()
    index.finish_rebuild(index.ids(), vectors[:2000])
    assert index.kind == "ivf-sq8" and len(index) == 2000
    built = FaissIndex.build(tmp_path / "b", "m", 32, "auto", np.arange(150), vectors[:150], 2000, fp16_threshold=100)
    assert built.kind == "flat-fp16" and len(built) == 150


def test_fp16_scores_stay_within_a_ten_thousandth_of_exact_and_survive_a_reopen(tmp_path):
    vectors = unit(3000, dim=64, seed=5)
    queries = unit(20, dim=64, seed=6)
    exact = FaissIndex.build(tmp_path / "exact", "m", 64, "flat", np.arange(3000), vectors)
    fp16 = FaissIndex.build(tmp_path / "fp16", "m", 64, "flat-fp16", np.arange(3000), vectors)
    want_scores, want_ids = exact.search(queries, 50)
    scores, ids = fp16.search(queries, 50)
    assert np.abs(scores - want_scores).max() < 1e-4 and (ids[:, :10] == want_ids[:, :10]).mean() > 0.98
    assert fp16.remove(np.array([int(want_ids[0, 0])])) == 1
    fp16.save()
    reopened = FaissIndex.open(tmp_path / "fp16", "m", 64, "flat-fp16")
    assert reopened.kind == "flat-fp16" and len(reopened) == 2999
    assert int(want_ids[0, 0]) not in set(reopened.ids().tolist())
    np.testing.assert_array_equal(reopened.search(queries, 50)[0], fp16.search(queries, 50)[0])


def test_a_rebuild_keeps_vectors_replaced_meanwhile_and_writes_go_on_after_it(tmp_path):
    vectors = clustered_unit(2200)
    index = FaissIndex.open(tmp_path, "m", 32, "auto", ivf_threshold=2000)
    index.upsert(np.arange(2000), vectors[:2000])
    index.begin_rebuild()
    snapshot_ids, snapshot = index.ids(), vectors[:2000]
    index.upsert(np.array([10]), vectors[[2100]])  # id 10 changed while the IVF index was built
    index.finish_rebuild(snapshot_ids, snapshot)
    assert index.kind == "ivf-sq8" and len(index) == 2000
    scores, found = index.search(vectors[2100], 1)
    assert found[0, 0] == 10 and scores[0, 0] == pytest.approx(1.0, abs=0.02)
    _, found = index.search(vectors[10], 1)
    assert found[0, 0] != 10  # its old vector is gone
    index.upsert(np.array([5000]), vectors[[2150]])  # writes after the rebuild are no longer logged
    assert index.remove(np.array([11])) == 1
    assert len(index) == 2000 and 5000 in set(index.ids().tolist()) and 11 not in set(index.ids().tolist())


def test_a_failed_rebuild_leaves_the_flat_index_working_and_asks_again(tmp_path):
    index = FaissIndex.open(tmp_path, "m", 16, "auto", ivf_threshold=5)
    index.upsert(np.arange(5), unit(5))
    assert index.wants_rebuild
    index.begin_rebuild()
    assert not index.wants_rebuild  # one at a time
    with pytest.raises(RuntimeError):  # 5 vectors cannot train 16 lists
        index.finish_rebuild(index.ids(), unit(5))
    assert index.kind == "flat" and index.wants_rebuild
    index.upsert(np.array([7]), unit(1, seed=2))
    assert sorted(index.ids().tolist()) == [0, 1, 2, 3, 4, 7]


def test_preload_of_a_file_gone_meanwhile_reports_nothing_done(tmp_path):
    vectors = clustered_unit(2000)
    FaissIndex.build(tmp_path, "m", 32, "ivf-sq8", np.arange(2000), vectors).save()
    index = FaissIndex.open(tmp_path, "m", 32, "ivf-sq8")
    (tmp_path / json.loads((tmp_path / "meta.json").read_text())["file"]).unlink()  # as a newer save does
    assert index.preload() is False
    assert index.describe().endswith("memory-mapped") and len(index) == 2000
    _, found = index.search(vectors[3], 1)
    assert found[0, 0] == 3


def test_a_refused_upsert_leaves_an_opened_index_unchanged(tmp_path):
    FaissIndex.build(tmp_path, "m", 16, "flat", np.arange(3), unit(3)).save()
    generation = json.loads((tmp_path / "meta.json").read_text())["generation"]
    index = FaissIndex.open(tmp_path, "m", 16)
    with pytest.raises(ValueError):
        index.upsert(np.array(["not-an-id"]), unit(1))
    assert not index.dirty and len(index) == 3
    index.save()  # still what the file holds: nothing to write
    assert json.loads((tmp_path / "meta.json").read_text())["generation"] == generation


def _damage_reason(tmp_path, caplog) -> str:
    with caplog.at_level(logging.WARNING, logger="index"):
        index = FaissIndex.open(tmp_path, "m", 16)
    assert len(index) == 0 and index.dirty
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    return str(record.args[0])


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ({"dim": 16}, "meta.json is unreadable (no embedder, file)"),
        ({"embedder": "m", "dim": 16, "file": "../faiss-000001.index"}, "not in the index directory"),
        ({"embedder": "m", "dim": 16, "file": "sub\\faiss-000001.index"}, "not in the index directory"),
    ],
)
def test_a_damaged_meta_warning_says_what_is_wrong(tmp_path, caplog, meta, reason):
    FaissIndex.build(tmp_path, "m", 16, "flat", np.arange(3), unit(3)).save()
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert reason in _damage_reason(tmp_path, caplog)


def test_an_unreadable_meta_warning_quotes_at_most_200_characters_of_the_error(tmp_path, caplog):
    directory = tmp_path / ("d" * 200)
    directory.mkdir()
    (directory / "meta.json").mkdir()  # reading it fails with an error that names its long path
    reason = _damage_reason(directory, caplog)
    assert reason.startswith("meta.json is unreadable (") and reason.endswith(")")
    assert len(reason) == len("meta.json is unreadable ()") + 200
