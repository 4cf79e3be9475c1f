"""Manifest ingest: idempotent upserts, per-row errors that do not stop the rest, index in step."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.models import Factory, Product
from app.models import Image as ImageRow
from app.services.ingest import ingest_manifest, run_job
from app.services.jobs import create_job
from app.services.manifest import read_manifest


def copy_catalogue(manifest: Path, target: Path) -> Path:
    shutil.copytree(manifest.parent, target)
    return target / "manifest.csv"


def append_rows(manifest: Path, rows: list[dict[str, str]]) -> None:
    with manifest.open(newline="") as handle:
        fields = csv.DictReader(handle).fieldnames
    with manifest.open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=fields).writerows(rows)


def count(runtime, model) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_ingest_then_rerun_changes_nothing(make_runtime, tiny_embedder, catalogue):
    runtime = make_runtime(tiny_embedder)
    first = ingest_manifest(runtime, catalogue)
    assert (first.total, first.added, first.failed) == (28, 28, 0)
    assert (count(runtime, Factory), count(runtime, Product), count(runtime, ImageRow)) == (4, 16, 28)
    assert len(runtime.index) == 28
    with runtime.sessions() as session:
        stored = {row.id: (row.embedding, row.content_hash) for row in session.scalars(select(ImageRow))}

    second = ingest_manifest(runtime, catalogue)
    assert (second.added, second.updated, second.unchanged, second.failed) == (0, 0, 28, 0)
    assert second.stage_seconds["embed"] < 0.05  # known bytes are never decoded or embedded again
    with runtime.sessions() as session:
        assert {row.id: (row.embedding, row.content_hash) for row in session.scalars(select(ImageRow))} == stored
    assert len(runtime.index) == 28


def test_changed_metadata_is_an_update_and_a_new_photo_an_add(make_runtime, tiny_embedder, catalogue, tmp_path):
    manifest = copy_catalogue(catalogue, tmp_path / "cat")
    runtime = make_runtime(tiny_embedder)
    ingest_manifest(runtime, manifest)
    Image.new("RGB", (64, 64), "purple").save(manifest.parent / "new.png")
    append_rows(
        manifest,
        [
            {
                "factory_id": "F001",
                "product_id": "F001-P001",
                "title": "Renamed mug",
                "image": "images/F001-P001-1.jpg",
            },
            {"factory_id": "F001", "product_id": "F001-P001", "image": "new.png"},
            {"factory_id": "F001", "product_id": "F001-P001", "image": "new.png"},  # same bytes twice: one image
        ],
    )
    report = ingest_manifest(runtime, manifest)
    assert (report.added, report.updated, report.failed) == (1, 1, 0)
    with runtime.sessions() as session:
        product = session.get(Product, "F001-P001")
        assert product.title == "Renamed mug" and product.attributes.get("material")  # untouched cells kept
        assert len(product.images) == 3
    assert len(runtime.index) == 29


def test_bad_rows_are_reported_and_the_rest_ingested(make_runtime, tiny_embedder, catalogue, tmp_path):
    manifest = copy_catalogue(catalogue, tmp_path / "cat")
    (manifest.parent / "notes.txt").write_text("not a picture")
    Image.new("RGB", (3000, 3000), "white").save(manifest.parent / "huge.png")
    append_rows(
        manifest,
        [
            {"factory_id": "F001", "product_id": "X1", "image": "missing.jpg"},
            {"factory_id": "F001", "product_id": "X2", "image": "notes.txt"},
            {"factory_id": "F001", "product_id": "X3", "image": "huge.png"},
            {"factory_id": "F002", "product_id": "F001-P001", "image": "images/F001-P002-1.jpg"},
            {"factory_id": "F001", "product_id": "X4", "price": "free", "image": "images/F001-P002-1.jpg"},
            {"factory_id": "F001", "product_id": "X5", "image": "ftp://example.com/a.jpg"},
        ],
    )
    runtime = make_runtime(tiny_embedder, max_image_pixels=4_000_000)
    report = ingest_manifest(runtime, manifest)
    assert (report.added, report.failed) == (28, 6)
    reasons = {error.line: error.reason for error in report.errors}
    assert "file not found" in reasons[30]
    assert "not an image" in reasons[31]
    assert "pixels" in reasons[32]
    assert "belongs to factory 'F001'" in reasons[33]
    assert "price 'free'" in reasons[34]
    assert "unsupported URL scheme" in reasons[35]
    with runtime.sessions() as session:  # failed rows leave no half-made products behind
        assert session.get(Product, "X1") is None and session.get(Product, "X3") is None
        assert session.get(Product, "F001-P001").factory_id == "F001"


def test_relative_paths_may_be_confined_to_the_upload(make_runtime, tiny_embedder, catalogue, tmp_path):
    manifest = copy_catalogue(catalogue, tmp_path / "cat")
    outside = tmp_path / "outside.png"
    Image.new("RGB", (32, 32), "red").save(outside)
    append_rows(manifest, [{"factory_id": "F001", "product_id": "X1", "image": "../outside.png"}])
    runtime = make_runtime(tiny_embedder)
    with runtime.sessions() as session:
        job = create_job(session, read_manifest(manifest), source="t", work_dir=str(manifest.parent), confined=True)
    report = run_job(runtime, job.id)
    assert report.failed == 1 and "outside the upload" in report.errors[0].reason


def test_index_is_repaired_from_database_on_restart(make_runtime, tiny_embedder, catalogue):
    runtime = make_runtime(tiny_embedder)
    ingest_manifest(runtime, catalogue)
    # Simulate a crash after the database commit but before the index reached the disk.
    runtime.index.remove(np.array([1, 2, 3]))
    runtime.index.upsert(np.array([9999]), np.ones((1, tiny_embedder.dim), np.float32) / np.sqrt(tiny_embedder.dim))
    runtime.index.save()
    restarted = make_runtime(tiny_embedder)
    assert sorted(restarted.index.ids().tolist()) == list(range(1, 29))


@pytest.mark.parametrize("bad_header", ["factory,product,picture\nF1,P1,a.jpg\n"])
def test_bad_header_fails_before_anything_is_stored(make_runtime, tiny_embedder, tmp_path, bad_header):
    from app.services.errors import InvalidInputError

    manifest = tmp_path / "m.csv"
    manifest.write_text(bad_header)
    runtime = make_runtime(tiny_embedder)
    with pytest.raises(InvalidInputError, match="required column"):
        ingest_manifest(runtime, manifest)
    assert count(runtime, Factory) == 0


def test_missing_or_corrupt_index_file_is_rebuilt_from_database(make_runtime, tiny_embedder, catalogue, caplog):
    runtime = make_runtime(tiny_embedder)
    ingest_manifest(runtime, catalogue)
    index_file = next(runtime.settings.index_dir.glob("faiss-*.index"))
    index_file.write_bytes(b"garbage")
    restarted = make_runtime(tiny_embedder)
    assert sorted(restarted.index.ids().tolist()) == list(range(1, 29))
    assert "unreadable" in caplog.text and "28 vectors added" in caplog.text
    index_file.unlink(missing_ok=True)
    for path in runtime.settings.index_dir.glob("faiss-*.index"):
        path.unlink()
    assert len(make_runtime(tiny_embedder).index) == 28


def test_growing_catalogue_moves_to_ivf_in_the_background(make_runtime, tiny_embedder, catalogue):
    runtime = make_runtime(tiny_embedder, index_ivf_threshold=20)
    ingest_manifest(runtime, catalogue)  # 28 images: past the threshold, so the flush starts a rebuild
    runtime._rebuild.join(60)
    assert runtime.index.kind == "ivf-sq8" and len(runtime.index) == 28
    assert sorted(runtime.index.ids().tolist()) == list(range(1, 29))
    reopened = make_runtime(tiny_embedder, index_ivf_threshold=20)
    assert reopened.index.kind == "ivf-sq8" and len(reopened.index) == 28
