"""The container, tested without a container engine: the entrypoint script (run for real), the settings
compose.yaml passes (read by the real Settings), the image's health check (run against a real server), and
the Dockerfile's promises (layers, CPU-only torch, non-root user, volume)."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from test_crash_and_shutdown import TINY, start
from test_kill_and_memory import free_port

from app.core.config import Settings

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def run_entrypoint(*args: str, env: dict[str, str], timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def with_venv_path(data_dir: Path, **extra: str) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "SOURCELENS_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **extra}


def test_the_entrypoint_migrates_then_runs_the_command(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sourcelens").write_text(f'#!/bin/sh\necho "$$ $*" >> {tmp_path}/calls\n')
    (fake / "sourcelens").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    assert run_entrypoint(env=env).returncode == 0  # no command: serve
    assert run_entrypoint("ingest", "/data/catalogue.csv", env=env).returncode == 0
    assert run_entrypoint("db", "current", env=env).returncode == 0  # db commands are not migrated first
    assert run_entrypoint("echo", "hello", env=env).stdout == "hello\n"  # anything else runs as given
    calls = [line.split(" ", 1) for line in (tmp_path / "calls").read_text().splitlines()]
    assert [args for _, args in calls] == [
        "db upgrade",
        "serve",
        "db upgrade",
        "ingest /data/catalogue.csv",
        "db current",
    ]


def test_the_entrypoint_on_a_fresh_volume_makes_the_schema(tmp_path):
    data_dir = tmp_path / "data"
    listed = run_entrypoint("keys", "list", env=with_venv_path(data_dir))
    assert listed.returncode == 0, listed.stderr
    assert "database at" in listed.stdout and "(was empty)" in listed.stdout
    current = run_entrypoint("db", "current", env=with_venv_path(data_dir))
    assert current.returncode == 0 and "the newest is" in current.stdout


def test_the_container_with_a_model_it_cannot_load_exits_in_one_line(tmp_path):
    env = with_venv_path(tmp_path / "data", SOURCELENS_MODEL="openclip:ViT-B-32:laion2b_s34b_b79k")
    env.pop("HF_HUB_OFFLINE")
    env["HF_HOME"] = str(tmp_path / "empty-cache")
    started = time.monotonic()
    failed = run_entrypoint(env={**env, "HF_HUB_OFFLINE": "1"})  # the same start with the hub off: this machine's pace
    offline = time.monotonic() - started
    assert failed.returncode == 2, failed.stderr[-2000:]
    started = time.monotonic()
    result = run_entrypoint(env=env)
    seconds = time.monotonic() - started
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr
    assert seconds < offline + 8, (seconds, offline)  # the hub's probe (3 s), not the download's retries


def test_compose_passes_settings_the_service_accepts(monkeypatch):
    api, db = COMPOSE["services"]["api"], COMPOSE["services"]["db"]
    for name in list(os.environ):
        if name.startswith("SOURCELENS_"):
            monkeypatch.delenv(name)
    for name, value in api["environment"].items():
        value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))  # compose's defaults
        if value:
            monkeypatch.setenv(name, value)
    settings = Settings()
    url = settings.resolved_database_url
    assert url.startswith("postgresql+psycopg://")
    user, password, host, database = re.match(r".*://(\w+):(\w+)@(\w+):5432/(\w+)$", url).groups()
    assert host == "db" and (user, password, database) == (
        db["environment"]["POSTGRES_USER"],
        db["environment"]["POSTGRES_PASSWORD"],
        db["environment"]["POSTGRES_DB"],
    )
    assert {"localhost", "127.0.0.1", "api"} <= set(settings.trusted_hosts)
    grace = re.match(r"(\d+)s", api["stop_grace_period"]).group(1)
    assert settings.shutdown_grace_s < int(grace)  # the server finishes before the engine's SIGKILL
    assert settings.model == "openclip:ViT-B-32:laion2b_s34b_b79k" and settings.model_fallback is None
    assert api["depends_on"]["db"]["condition"] == "service_healthy" and "pg_isready" in str(db["healthcheck"])
    assert api["volumes"] == ["data:/data"]
    # Several processes share one vector store (Milvus, with its etcd and MinIO); the worker runs the jobs.
    assert settings.vector_store == "milvus://milvus:19530" and not settings.run_jobs
    milvus = COMPOSE["services"]["milvus"]
    assert milvus["environment"] == {"ETCD_ENDPOINTS": "etcd:2379", "MINIO_ADDRESS": "minio:9000"}
    assert {"etcd", "minio"} <= set(milvus["depends_on"]) and api["depends_on"]["milvus"][
        "condition"
    ] == "service_healthy"
    worker = COMPOSE["services"]["worker"]
    assert worker["command"] == ["worker"] and worker["volumes"] == ["data:/data"]
    assert worker["environment"]["SOURCELENS_VECTOR_STORE"] == "milvus://milvus:19530"
    assert "SOURCELENS_RUN_JOBS" not in worker["environment"]


def test_the_dockerfile_keeps_its_promises():
    build, run = DOCKERFILE.split("FROM python:3.11-slim AS run")
    # Dependencies in their own layer: installed before any code is copied in.
    assert build.index('".[postgres,redis,milvus]"') < build.index("COPY app ./app")
    assert "download.pytorch.org/whl/cpu" in build  # CPU-only torch: no CUDA libraries in the image
    assert "COPY --from=build /opt/venv /opt/venv" in run and "pip install" not in run
    assert re.search(r"^USER sourcelens$", run, re.M) and "--uid 1000" in run
    assert 'VOLUME ["/data"]' in run and "SOURCELENS_DATA_DIR=/data" in run
    assert '["sourcelens-entrypoint"]' in run and 'CMD ["serve"]' in run
    assert "/readyz" in run


def test_the_image_health_check_asks_for_readiness(tmp_path):
    command = json.loads(re.search(r"CMD (\[\"python\".*\])$", DOCKERFILE, re.M).group(1))
    port = free_port()
    env = {**os.environ, "SOURCELENS_PORT": str(port)}
    down = subprocess.run(command, env=env, capture_output=True, timeout=30)
    assert down.returncode != 0  # nothing listening: unhealthy
    server = start(tmp_path / "data", port, tmp_path / "server.log")
    try:
        up = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
        assert up.returncode == 0, shlex.join(command) + up.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["ready"] is True
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert TINY in (tmp_path / "server.log").read_text()
