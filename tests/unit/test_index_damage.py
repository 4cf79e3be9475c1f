"""A damaged index never blocks start and never loads garbage: truncated or missing meta.json, a missing,
truncated or bit-flipped index file each start empty with one warning, and the services rebuild the index
from the database (the source of truth)."""

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from app.catalog.models import Image
from app.search.options import QueryPhoto, SearchOptions
from index import FaissIndex


def unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def truncate_meta(directory: Path) -> None:
    meta = directory / "meta.json"
    meta.write_bytes(meta.read_bytes()[:25])


def meta_not_an_object(directory: Path) -> None:
    (directory / "meta.json").write_text("[1, 2]")


def meta_names_a_path_outside(directory: Path) -> None:
    meta = json.loads((directory / "meta.json").read_text())
    (directory / "meta.json").write_text(json.dumps({**meta, "file": "../../etc/passwd"}))


def delete_meta(directory: Path) -> None:
    (directory / "meta.json").unlink()


def delete_index_file(directory: Path) -> None:
    (directory / json.loads((directory / "meta.json").read_text())["file"]).unlink()


def truncate_index_file(directory: Path) -> None:
    path = directory / json.loads((directory / "meta.json").read_text())["file"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_vector_bytes(directory: Path) -> None:
    """Flip the exponent bits of floats near the end of the file, where FAISS stores the vectors: the file
    still parses, so only the checksum tells."""
    path = directory / json.loads((directory / "meta.json").read_text())["file"]
    data = bytearray(path.read_bytes())
    for offset in range(len(data) - 200, len(data) - 100, 4):
        data[offset + 3] ^= 0x7F
    path.write_bytes(bytes(data))


def old_meta_without_checksum_and_flipped_bytes(directory: Path) -> None:
    """An index saved before checksums: the vector count still guards a file that parses to another size."""
    meta = json.loads((directory / "meta.json").read_text())
    del meta["sha256"]
    (directory / "meta.json").write_text(json.dumps({**meta, "count": meta["count"] + 1}))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated meta": truncate_meta,
    "meta not an object": meta_not_an_object,
    "meta names a path outside": meta_names_a_path_outside,
    "missing meta": delete_meta,
    "missing index file": delete_index_file,
    "truncated index file": truncate_index_file,
    "flipped vector bytes": flip_vector_bytes,
    "count disagrees": old_meta_without_checksum_and_flipped_bytes,
}


@pytest.mark.parametrize("kind", ["flat", "flat-fp16", "ivf-sq8"])
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_index_opens_empty_and_dirty_with_one_warning(tmp_path, caplog, damage, kind):
    vectors = unit(300)
    FaissIndex.build(tmp_path, "m", 16, kind, np.arange(300), vectors).save()
    DAMAGE[damage](tmp_path)
    with caplog.at_level(logging.WARNING, logger="index"):
        reopened = FaissIndex.open(tmp_path, "m", 16, kind)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "rebuilt from the database" in warnings[0].getMessage()
    assert len(reopened) == 0 and reopened.dirty
    reopened.upsert(np.arange(300), vectors)  # what the owner's reconcile does
    reopened.save()
    again = FaissIndex.open(tmp_path, "m", 16, kind)
    scores, ids = again.search(vectors[42], 1)
    assert ids[0, 0] == 42 and scores[0, 0] == pytest.approx(1.0, abs=0.02)


def test_an_intact_index_opens_without_a_warning_and_checks_its_checksum(tmp_path, caplog):
    FaissIndex.build(tmp_path, "m", 16, "flat", np.arange(10), unit(10)).save()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert len(meta["sha256"]) == 64
    with caplog.at_level(logging.WARNING):
        assert len(FaissIndex.open(tmp_path, "m", 16)) == 10
    assert not caplog.records


@pytest.mark.parametrize("damage", ["truncated meta", "missing index file", "flipped vector bytes"])
def test_services_rebuild_a_damaged_index_from_the_database(make_services, tiny_embedder, catalogue, caplog, damage):
    services = make_services(tiny_embedder)
    assert services.ingest.ingest_manifest(catalogue).added == 28
    services.keeper.flush()
    services.close()
    DAMAGE[damage](services.settings.index_dir)
    with caplog.at_level(logging.WARNING):
        reopened = make_services(tiny_embedder)
    assert [r.levelno for r in caplog.records].count(logging.WARNING) == 2  # the damage, then the repair
    with reopened.sessions() as session:
        stored = sorted(session.scalars(select(Image.id)))
    assert sorted(reopened.keeper.index.ids().tolist()) == stored and len(stored) == 28
    data = (catalogue.parent / "images" / "F002-P003-1.jpg").read_bytes()
    result = reopened.search.run([QueryPhoto(data)], None, SearchOptions(top_k=2))
    best = result.factories[0]
    assert best.factory_id == "F002" and 0.99 <= best.matches[0].similarity <= 1.0001


def test_a_damaged_meta_leaves_the_model_setting_to_its_default(tmp_path):
    from app.core.config import DEFAULT_MODEL, Settings

    settings = Settings(data_dir=tmp_path)
    FaissIndex.build(settings.index_dir, "effnet-lite0", 16, "flat", np.arange(3), unit(3)).save()
    assert settings.resolved_model == "effnet-lite0"  # a data directory keeps the model it was built with
    truncate_meta(settings.index_dir)
    assert settings.resolved_model == DEFAULT_MODEL
