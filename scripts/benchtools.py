"""Shared by the serving benchmarks: run `sourcelens serve` on loopback for the length of a measurement."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.core.cores import usable_cores


@contextmanager
def running_server(data_dir: Path, port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """Yields the base URL once /healthz answers; stops the server afterwards."""
    server_env = {
        **os.environ,
        "SOURCELENS_DATA_DIR": str(data_dir),
        "SOURCELENS_ANONYMOUS_SEARCH": "true",  # the benchmarks search as the public page does
        "SOURCELENS_RATE_LIMIT_PER_ADDRESS": "1000000/minute",  # and from one address, far faster than a person
        "SOURCELENS_SEARCH_QUEUE_MAX": "1000",  # bench_load's clients all wait; none is turned away
        **(env or {}),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a million-image catalogue takes a few seconds to open
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(60)


def machine() -> str:
    """The CPU by name (model name, family and model, as /proc/cpuinfo gives them) and the usable cores."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    extras = [name for name in ("avx512f", "avx512_bf16", "amx_tile") if name in flags]
    name = info.get("model name", "unknown CPU")
    return (
        f"{name} (family {info.get('cpu family', '?')} model {info.get('model', '?')}"
        f"{', ' + '/'.join(extras) if extras else ''}), {usable_cores()} cores"
    )
