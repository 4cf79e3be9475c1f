"""Manifest ingest: idempotent upserts, per-row errors that do not stop the rest, index in step."""

import csv
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.catalog.models import Factory, Product
from app.catalog.models import Image as ImageRow
from app.ingest.manifest import read_manifest


def copy_catalogue(manifest: Path, target: Path) -> Path:
    shutil.copytree(manifest.parent, target)
    return target / "manifest.csv"


def append_rows(manifest: Path, rows: list[dict[str, str]]) -> None:
    with manifest.open(newline="") as handle:
        fields = csv.DictReader(handle).fieldnames
    with manifest.open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=fields).writerows(rows)


def count(services, model) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_ingest_then_rerun_changes_nothing(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder)
    first = services.ingest.ingest_manifest(catalogue)
    assert (first.total, first.added, first.failed) == (28, 28, 0)
    assert (count(services, Factory), count(services, Product), count(services, ImageRow)) == (4, 16, 28)
    assert len(services.index) == 28
    with services.sessions() as session:
        stored = {row.id: (row.embedding, row.content_hash) for row in session.scalars(select(ImageRow))}

    second = services.ingest.ingest_manifest(catalogue)
    assert (second.added, second.updated, second.unchanged, second.failed) == (0, 0, 28, 0)
    assert second.stage_seconds["embed"] < 0.05  # known bytes are never decoded or embedded again
    with services.sessions() as session:
        assert {row.id: (row.embedding, row.content_hash) for row in session.scalars(select(ImageRow))} == stored
    assert len(services.index) == 28


def test_changed_metadata_is_an_update_and_a_new_photo_an_add(make_services, tiny_embedder, catalogue, tmp_path):
    manifest = copy_catalogue(catalogue, tmp_path / "cat")
    services = make_services(tiny_embedder)
    services.ingest.ingest_manifest(manifest)
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
    report = services.ingest.ingest_manifest(manifest)
    assert (report.added, report.updated, report.failed) == (1, 1, 0)
    with services.sessions() as session:
        product = session.get(Product, "F001-P001")
        assert product.title == "Renamed mug" and product.attributes.get("material")  # untouched cells kept
        assert len(product.images) == 3
    assert len(services.index) == 29


def test_bad_rows_are_reported_and_the_rest_ingested(make_services, tiny_embedder, catalogue, tmp_path):
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
    services = make_services(tiny_embedder, max_image_pixels=4_000_000)
    report = services.ingest.ingest_manifest(manifest)
    assert (report.added, report.failed) == (28, 6)
    reasons = {error.line: error.reason for error in report.errors}
    assert "file not found" in reasons[30]
    assert "not an image" in reasons[31]
    assert "pixels" in reasons[32]
    assert "belongs to factory 'F001'" in reasons[33]
    assert "price 'free'" in reasons[34]
    assert "unsupported URL scheme" in reasons[35]
    with services.sessions() as session:  # failed rows leave no half-made products behind
        assert session.get(Product, "X1") is None and session.get(Product, "X3") is None
        assert session.get(Product, "F001-P001").factory_id == "F001"


def test_relative_paths_may_be_confined_to_the_upload(make_services, tiny_embedder, catalogue, tmp_path):
    manifest = copy_catalogue(catalogue, tmp_path / "cat")
    outside = tmp_path / "outside.png"
    Image.new("RGB", (32, 32), "red").save(outside)
    append_rows(manifest, [{"factory_id": "F001", "product_id": "X1", "image": "../outside.png"}])
    services = make_services(tiny_embedder)
    job_id = services.jobs.create(read_manifest(manifest), source="t", work_dir=str(manifest.parent), confined=True)
    report = services.ingest.run_job(job_id)
    assert report.failed == 1 and "outside the upload" in report.errors[0].reason


def test_index_is_repaired_from_database_on_restart(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder)
    services.ingest.ingest_manifest(catalogue)
    # Simulate a crash after the database commit but before the index reached the disk.
    services.index.remove(np.array([1, 2, 3]))
    services.index.upsert(np.array([9999]), np.ones((1, tiny_embedder.dim), np.float32) / np.sqrt(tiny_embedder.dim))
    services.index.save()
    restarted = make_services(tiny_embedder)
    assert sorted(restarted.index.ids().tolist()) == list(range(1, 29))


@pytest.mark.parametrize("bad_header", ["factory,product,picture\nF1,P1,a.jpg\n"])
def test_bad_header_fails_before_anything_is_stored(make_services, tiny_embedder, tmp_path, bad_header):
    from app.core.errors import InvalidInputError

    manifest = tmp_path / "m.csv"
    manifest.write_text(bad_header)
    services = make_services(tiny_embedder)
    with pytest.raises(InvalidInputError, match="required column"):
        services.ingest.ingest_manifest(manifest)
    assert count(services, Factory) == 0


def test_missing_or_corrupt_index_file_is_rebuilt_from_database(make_services, tiny_embedder, catalogue, caplog):
    services = make_services(tiny_embedder)
    services.ingest.ingest_manifest(catalogue)
    index_file = next(services.settings.index_dir.glob("faiss-*.index"))
    index_file.write_bytes(b"garbage")
    restarted = make_services(tiny_embedder)
    assert sorted(restarted.index.ids().tolist()) == list(range(1, 29))
    assert "does not match its checksum" in caplog.text and "28 vectors added" in caplog.text
    index_file.unlink(missing_ok=True)
    for path in services.settings.index_dir.glob("faiss-*.index"):
        path.unlink()
    assert len(make_services(tiny_embedder).index) == 28


def test_growing_catalogue_moves_to_ivf_in_the_background(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder, index_ivf_threshold=20)
    services.ingest.ingest_manifest(catalogue)  # 28 images: past the threshold, so the flush starts a rebuild
    services.keeper.wait_for_rebuild(60)
    assert services.index.kind == "ivf-sq8" and len(services.index) == 28
    assert sorted(services.index.ids().tolist()) == list(range(1, 29))
    reopened = make_services(tiny_embedder, index_ivf_threshold=20)
    assert reopened.index.kind == "ivf-sq8" and len(reopened.index) == 28


def test_a_catalogue_past_the_fp16_threshold_moves_to_flat_fp16_in_the_background(
    make_services, tiny_embedder, catalogue
):
    services = make_services(tiny_embedder, index_fp16_threshold=20)
    services.ingest.ingest_manifest(catalogue)  # 28 images: past 20, short of the IVF threshold
    services.keeper.wait_for_rebuild(60)
    assert services.index.kind == "flat-fp16" and sorted(services.index.ids().tolist()) == list(range(1, 29))
    reopened = make_services(tiny_embedder, index_fp16_threshold=20)
    assert reopened.index.kind == "flat-fp16" and len(reopened.index) == 28
    assert make_services(tiny_embedder).index.kind == "flat-fp16"  # a later default never moves it back


def test_a_local_manifest_fetches_urls_reports_progress_and_counts_outcomes(
    make_services, tiny_embedder, catalogue, images_site, tmp_path
):
    """The CLI's ingest: http(s) rows are fetched, paths outside the manifest's folder are the operator's to
    use (only an upload is confined), progress is told per batch, and the outcomes reach /metrics."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    shutil.copy(catalogue.parent / "images" / "F001-P002-1.jpg", tmp_path / "beside.jpg")
    manifest = folder / "manifest.csv"
    manifest.write_text(
        "factory_id,product_id,image\n"
        f"F1,P1,{images_site}/F001-P001-1.jpg\n"
        f"F1,P2,{images_site}/F002-P001-1.jpg\n"
        "F1,P3,../beside.jpg\n"
        "F1,P4,https://127.0.0.1:1/a.jpg\n"
    )
    services = make_services(tiny_embedder, embed_batch_size=2, url_allow_hosts=[images_site.removeprefix("http://")])
    told: list[int] = []
    started = time.perf_counter()
    report = services.ingest.ingest_manifest(manifest, told.append)
    assert 0 < report.elapsed_s <= time.perf_counter() - started  # the job's own run time, batch by batch
    assert (report.state, report.added, report.failed) == ("done", 3, 1)
    assert "non-public address" in report.errors[0].reason  # an https row goes to the fetcher, which refuses it
    assert told == [0, 2, 2]  # done before it started, then each batch
    assert report.stage_seconds["read"] > 0
    added = services.metrics.registry.get_sample_value("sourcelens_ingest_items_total", {"outcome": "added"})
    failed = services.metrics.registry.get_sample_value("sourcelens_ingest_items_total", {"outcome": "failed"})
    assert (added, failed) == (3, 1)


def test_a_new_factory_name_or_category_is_an_update_and_the_job_keeps_its_times(
    make_services, tiny_embedder, catalogue, tmp_path
):
    manifest = copy_catalogue(catalogue, tmp_path / "cat")
    services = make_services(tiny_embedder)
    first = services.ingest.ingest_manifest(manifest)
    assert services.jobs.count_items(first.job_id, "done") == 28  # every item acknowledged
    assert first.elapsed_s >= first.stage_seconds["embed"] > 0 and first.stage_seconds["write"] > 0  # all batches
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["factory_id"] == "F001":
            row["factory_name"] = "Renamed Co."  # the factory changes, its products do not
        if row["product_id"] == "F002-P001":
            row["category"] = "vase"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = services.ingest.ingest_manifest(manifest)
    assert (report.updated, report.added, report.failed) == (2, 0, 0)  # the first row of each change
    with services.sessions() as session:
        assert session.get(Factory, "F001").name == "Renamed Co."
        assert session.get(Product, "F002-P001").category == "vase"
