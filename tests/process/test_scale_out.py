"""Past one process: API processes and a worker sharing the real PostgreSQL and a Milvus server (milvus-lite's
gRPC server, which speaks Milvus's protocol). Catalogue changes made through one process are seen by searches
through another: every acknowledged image is found, no deleted one ever is, filters hold."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import jpeg_bytes
from jobtools import catalogue_zip
from test_crash_and_shutdown import env_for, start
from test_kill_and_memory import SCRIPT, free_port
from test_workers import admin_key, one, start_workers, stop_all, wait_for, worker_env

from app.demo.sample_catalogue import Design, factory_palette, render_product

pytestmark = pytest.mark.process
MILVUS_LITE = Path(sys.executable).parent / "milvus-lite"


@pytest.fixture
def milvus(tmp_path: Path) -> Iterator[str]:
    """A Milvus server for this test (milvus-lite's, on a free port); its address as a vector-store setting."""
    port, log = free_port(), tmp_path / "milvus.log"
    with log.open("ab") as sink:
        command = [str(MILVUS_LITE), "server", "--data-dir", str(tmp_path / "milvus"), "--host", "127.0.0.1"]
        process = subprocess.Popen([*command, "--port", str(port)], stdout=sink, stderr=sink)
    try:
        wait_for(lambda: _listening(port) or process.poll() is not None, 60, log)
        assert process.poll() is None, log.read_text()[-2000:]
        yield f"milvus://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def search(client: httpx.Client, photo: bytes, **fields: str) -> dict:
    files = {"image": ("q.jpg", photo, "image/jpeg")}
    answer = client.post("/api/v1/search", files=files, data={"include_weak": "true", "top_k": "20", **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()


def top_image(body: dict) -> int | None:
    return body["factories"][0]["matches"][0]["image_id"] if body["factories"] else None


def test_what_one_api_process_acknowledges_another_finds_and_a_deleted_image_never(
    tmp_path, database, milvus, catalogue
):
    url, engine = database
    data_dir = tmp_path / "data"  # shared, as a volume would be: the stored catalogue images
    shared = {"SOURCELENS_DATABASE_URL": url, "SOURCELENS_VECTOR_STORE": milvus, "SOURCELENS_RUN_JOBS": "false"}
    env = worker_env(data_dir, url, SOURCELENS_VECTOR_STORE=milvus)
    key = admin_key(env)
    port_a, port_b = free_port(), free_port()
    writer = start(data_dir, port_a, tmp_path / "a.log", **shared)
    # The second entry point is itself two processes on one port: `serve --workers 2`.
    with (tmp_path / "b.log").open("ab") as sink:
        readers = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port_b), "--workers", "2"],
            env=env_for(data_dir, **shared),
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    worker = None
    try:
        [worker] = start_workers(env, [tmp_path / "worker.log"])
        a = httpx.Client(base_url=f"http://127.0.0.1:{port_a}", headers=key, timeout=60)
        b = httpx.Client(base_url=f"http://127.0.0.1:{port_b}", headers=key, timeout=60)
        wait_for(lambda: _healthy(b) or readers.poll() is not None, 120, tmp_path / "b.log")
        assert readers.poll() is None, (tmp_path / "b.log").read_text()[-3000:]

        # A catalogue ingested through A, by the worker: B finds each image as its own best match.
        files = {"file": ("c.zip", catalogue_zip(catalogue), "application/zip")}
        job = a.post("/api/v1/ingest-jobs", files=files).json()
        wait_for(lambda: b.get(f"/api/v1/ingest-jobs/{job['id']}").json()["state"] == "done", 120)
        ids = dict(one_by_one(engine, "SELECT content_hash, id FROM images"))
        assert len(ids) == 28
        for path in sorted((catalogue.parent / "images").glob("*.jpg")):
            photo = path.read_bytes()
            assert top_image(search(b, photo)) == ids[hashlib.sha256(photo).hexdigest()], path.name

        # An image added through A is found through B as soon as A has answered 201.
        new = jpeg_bytes(render_product(Design(seed=4242, palette=factory_palette(7)), size=240))
        added = a.post("/api/v1/products/F002-P001/images", files={"image": ("n.jpg", new, "image/jpeg")})
        assert added.status_code == 201, added.text
        assert top_image(search(b, new)) == added.json()["id"]

        # A product deleted through A is never returned through B, however loosely B searches.
        by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in (catalogue.parent / "images").glob("*.jpg")}
        gone = dict(one_by_one(engine, "SELECT id, content_hash FROM images WHERE product_id = 'F001-P001'"))
        assert gone and top_image(search(b, by_hash[next(iter(gone.values()))].read_bytes())) in gone
        assert a.delete("/api/v1/products/F001-P001").status_code == 204
        for content_hash in gone.values():
            body = search(b, by_hash[content_hash].read_bytes())
            found = {m["image_id"] for f in body["factories"] for m in f["matches"]}
            assert found and not found & set(gone), body

        # Filters hold through B (inside Milvus): every factory found is in the region asked for.
        region = one(engine, "SELECT region FROM factories WHERE id = 'F003'")[0]
        body = search(b, new, region=region)
        assert body["factories"] and {f["region"] for f in body["factories"]} == {region}
    finally:
        stop_all(*([worker] if worker else []))
        for process in (writer, readers):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)


def test_several_api_processes_need_a_shared_vector_store(tmp_path):
    refused = subprocess.run(
        [str(SCRIPT), "serve", "--port", str(free_port()), "--workers", "2"],
        env=env_for(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "SOURCELENS_VECTOR_STORE=milvus://" in refused.stderr


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        time.sleep(0.2)
        return False


def one_by_one(engine, sql: str) -> list[tuple]:
    from sqlalchemy import text

    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]
