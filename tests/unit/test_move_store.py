"""`sourcelens reindex --to STORE`: the catalogue's vectors move between FAISS and Milvus (Milvus Lite here),
from the database's stored embeddings, resumably, with what changed during the move brought in at the end."""

from pathlib import Path

import numpy as np
import pytest
import tqdm

from app.catalog.index_sync import load_vectors
from app.catalog.move import move_vectors
from app.cli import main
from app.core.access import Principal
from index import open_index

# Milvus Lite serves gRPC in this process; see tests/unit/test_vector_store_contract.py.
LINGERING_THREADS = ("ThreadPoolExecutor-",)
tqdm.tqdm.monitor_interval = 0  # the command's progress bar starts no monitor thread here


class Interrupted(Exception):
    pass


@pytest.fixture
def ingested(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder)
    assert services.ingest.ingest_manifest(catalogue).added == 28
    return services


def test_an_interrupted_move_resumes_and_ends_equal_to_the_database(ingested, tmp_path: Path):
    services = ingested
    lite = str(tmp_path / "moved.db")
    state = tmp_path / "move.json"
    target = open_index(tmp_path / "unused", services.model.name, services.model.dim, store=lite)
    calls = []

    def stop_after_two_chunks(count: int) -> None:
        calls.append(count)
        if len(calls) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        move_vectors(services.sessions, target, lite, state, stop_after_two_chunks, chunk=8)
    assert len(target) == 16 and state.exists()

    # Meanwhile the live catalogue changes: a product goes (its vectors must not reach the new store).
    gone = services.catalog.get_product("F004-P004").image_ids
    services.catalog.delete_product("F004-P004", Principal.system())
    report = move_vectors(services.sessions, target, lite, state, chunk=8)
    assert report.resumed_after > 0 and report.copied == 28 - 16 - len(gone)
    assert not state.exists()
    with services.sessions() as session:
        ids, vectors = load_vectors(session, services.model.dim)
    assert sorted(target.ids().tolist()) == ids.tolist() and not set(gone) & set(target.ids().tolist())
    # The same nearest neighbours as the store the server searches.
    _, moved = target.search(vectors[:5], 3)
    _, there = services.index.search(vectors[:5], 3)
    assert moved[:, 0].tolist() == there[:, 0].tolist() == ids[:5].tolist()
    target.close()


def test_a_fresh_run_for_another_target_starts_over(ingested, tmp_path: Path):
    services = ingested
    state = tmp_path / "move.json"
    state.write_text('{"target": "milvus://elsewhere:19530 x", "last_id": 999}')
    lite = str(tmp_path / "other.db")
    target = open_index(tmp_path / "unused", services.model.name, services.model.dim, store=lite)
    report = move_vectors(services.sessions, target, lite, state)
    assert (report.resumed_after, report.copied, report.total) == (0, 28, 28)
    target.close()


def test_the_command_moves_to_milvus_and_back_to_faiss(ingested, tmp_path: Path, capsys):
    services = ingested
    data_dir = services.settings.data_dir
    base = ["--data-dir", str(data_dir), "--model", services.model.name]
    services.close()
    lite = str(tmp_path / "vectors.db")
    assert main([*base, "reindex", "--to", lite]) == 0
    out = capsys.readouterr().out
    assert f"copied 28 vectors to {lite}" in out and f"SOURCELENS_VECTOR_STORE={lite}" in out
    moved = open_index(tmp_path / "unused", services.model.name, services.model.dim, store=lite)
    assert len(moved) == 28
    moved.close()
    assert main([*base, "reindex", "--to", "faiss"]) == 2  # already there: the current store is FAISS
    assert "already" in capsys.readouterr().err
    assert main([*base, "reindex", "--to", "nowhere"]) == 2
    assert "'nowhere' is not a vector store" in capsys.readouterr().err


def test_moving_an_empty_catalogue_says_there_is_nothing_to_move(make_services, tiny_embedder, tmp_path, capsys):
    services = make_services(tiny_embedder)
    data_dir = services.settings.data_dir
    services.close()
    assert main(["--data-dir", str(data_dir), "reindex", "--to", str(tmp_path / "v.db")]) == 2
    assert "nothing to move" in capsys.readouterr().err


def test_vectors_moved_back_from_milvus_to_faiss(ingested, tmp_path: Path):
    services = ingested
    lite = str(tmp_path / "there.db")
    milvus = open_index(tmp_path / "unused", services.model.name, services.model.dim, store=lite)
    move_vectors(services.sessions, milvus, lite, tmp_path / "state.json")
    milvus.close()
    faiss_dir = tmp_path / "faiss-again"
    back = open_index(faiss_dir, services.model.name, services.model.dim)
    report = move_vectors(services.sessions, back, "faiss", tmp_path / "state.json", chunk=5)
    assert report.total == 28 and (faiss_dir / "meta.json").exists()
    reopened = open_index(faiss_dir, services.model.name, services.model.dim)
    assert np.array_equal(np.sort(reopened.ids()), np.sort(services.index.ids()))
