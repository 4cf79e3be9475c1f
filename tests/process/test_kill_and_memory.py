"""Process-level guarantees: a server killed with SIGKILL mid-job resumes it; bombs never reach memory."""

import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import httpx
import pytest
from jobtools import catalogue_zip

from app.demo.sample_catalogue import write_catalogue

pytestmark = pytest.mark.process

SCRIPT = Path(sys.executable).parent / "sourcelens"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SOURCELENS_DATA_DIR": str(data_dir),
        "SOURCELENS_MODEL": "effnet-lite0",
        "SOURCELENS_EMBED_BATCH_SIZE": "4",
        "SOURCELENS_JOB_POLL_S": "0.1",
        "SOURCELENS_RATE_LIMIT_PER_ADDRESS": "100000/minute",  # the test polls far faster than a person
        "HF_HUB_OFFLINE": "1",
    }


def admin_key(data_dir: Path) -> dict[str, str]:
    made = subprocess.run(
        [str(SCRIPT), "keys", "create", "--name", "test", "--role", "admin"],
        env=server_env(data_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    return {"Authorization": "Bearer " + made.stdout.split(": ", 1)[1].strip()}


def start_server(data_dir: Path, port: int) -> subprocess.Popen:
    env = server_env(data_dir)
    process = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("server did not start")


def job(base: str, job_id: str, key: dict[str, str]) -> dict:
    return httpx.get(f"{base}/api/v1/ingest-jobs/{job_id}", headers=key, timeout=5).json()


def test_sigkill_mid_job_then_restart_resumes_without_loss_or_duplicates(tmp_path):
    manifest = write_catalogue(tmp_path / "catalogue", factories=6, products_per_factory=8, size=480)
    total = len(manifest.read_text().splitlines()) - 1
    data_dir, port = tmp_path / "data", free_port()
    base, key = f"http://127.0.0.1:{port}", admin_key(data_dir)
    server = start_server(data_dir, port)
    try:
        files = {"file": ("c.zip", catalogue_zip(manifest), "application/zip")}
        job_id = httpx.post(f"{base}/api/v1/ingest-jobs", files=files, headers=key, timeout=30).json()["id"]
        while (acknowledged := job(base, job_id, key)["done"]) < 12:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert acknowledged < total, "the job finished before the kill; the test needs a slower job"

    with sqlite3.connect(data_dir / "sourcelens.db") as db:
        stored = db.execute("SELECT count(*) FROM images").fetchone()[0]
        done_items = db.execute("SELECT count(*) FROM ingest_items WHERE state = 'done'").fetchone()[0]
    assert done_items >= acknowledged  # nothing the server reported done was lost
    assert stored == done_items  # every acknowledged item has its image, and no unacknowledged one does

    server = start_server(data_dir, port)
    try:
        deadline = time.monotonic() + 120
        while (body := job(base, job_id, key))["state"] != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        health = httpx.get(f"{base}/healthz").json()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert (body["state"], body["done"], body["added"], body["failed"]) == ("done", total, total, 0)
    with sqlite3.connect(data_dir / "sourcelens.db") as db:
        assert db.execute("SELECT count(*) FROM images").fetchone()[0] == total
        assert db.execute("SELECT count(DISTINCT content_hash) FROM images").fetchone()[0] == total
    assert health["images"] == total  # the index agrees with the database


def png_bomb(path: Path, width: int, height: int) -> None:
    """A valid 1-bit PNG of width×height zero pixels, streamed so the test never holds the bitmap either."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor, row = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


PEAK_RSS = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from app.bootstrap import build_services
    from app.core.config import Settings
    settings = Settings(data_dir=Path(sys.argv[1]), model="openclip:sourcelens-tiny:random", precision="fp32")
    services = build_services(settings)
    for manifest in sys.argv[2:]:  # ru_maxrss only grows: each manifest's peak is read after the ones before
        report = services.ingest.ingest_manifest(Path(manifest))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(json.dumps([report.added, report.unchanged, report.failed, peak, [e.reason for e in report.errors]]))
    services.close()
""")


def test_bomb_sized_pngs_are_refused_in_bounded_memory(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(tmp_path / "small.png")
    (tmp_path / "baseline.csv").write_text("factory_id,product_id,image\nF1,P1,small.png\n")
    manifests = [str(tmp_path / "baseline.csv")]
    for width, height in [(16000, 14464), (24960, 24960)]:  # 231 and 623 megapixels
        bomb = tmp_path / f"bomb-{width}.png"
        png_bomb(bomb, width, height)
        assert bomb.stat().st_size < 1_000_000
        manifest = tmp_path / f"bomb-{width}.csv"
        manifest.write_text(f"factory_id,product_id,image\nF1,P1,small.png\nF1,P{width},{bomb.name}\n")
        manifests.append(str(manifest))
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(tmp_path / "data"), *manifests],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.splitlines()
    (added, _, failed, baseline, _), *bombs = [json.loads(line) for line in out]
    assert (added, failed) == (1, 0)
    for _, unchanged, failed, peak, reasons in bombs:
        assert (unchanged, failed) == (1, 1) and "pixels" in reasons[0]
        # Decoding would take width×height bytes even as 1-bit→L (231 MB / 623 MB); the job grows by far less.
        assert peak - baseline < 40, (baseline, bombs)
