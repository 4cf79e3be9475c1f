"""Shared by the benchmarks: `sourcelens serve` on loopback for the length of a measurement, the machine by name,
and the photos sellers search with."""

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from app.calibration.transforms import TRANSFORMS, competitor_photo
from app.core.cores import usable_cores
from app.demo.sample_catalogue import Design, factory_palette, render_product

T = TypeVar("T")


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


def on_a_passing_thread(work: Callable[[], T]) -> T:
    """`work()` on a thread that ends with it. torch's OpenMP keeps a pool of threads for each thread that calls
    it, and with more pooled threads than cores every pool stops spinning between ops (libgomp's throttled
    wait): a bare loop on the main thread would slow every later pass of the service's own model thread."""
    with ThreadPoolExecutor(1) as once:
        return once.submit(work).result()


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


@dataclass(frozen=True)
class Query:
    photo: bytes
    factory: str | None  # the factory that makes it; None for a product the catalogue lacks


def competitor_queries(catalogue_photos: list[Path], unknown: int) -> list[Query]:
    """What sellers search with: catalogue photos as competitors show them (every transform, twice, each on
    another product), then photos of products the catalogue lacks, drawn in the same style."""
    queries = []
    for number, transform in enumerate(list(TRANSFORMS) * 2):
        path = catalogue_photos[number % len(catalogue_photos)]
        queries.append(Query(competitor_photo(path, transform, seed=number), path.name.split("-")[0]))
    for seed in range(unknown):
        buffer = io.BytesIO()
        design = Design(seed=1000 + seed, palette=factory_palette(1000 + seed))
        render_product(design, size=640).save(buffer, format="JPEG", quality=85)
        queries.append(Query(buffer.getvalue(), None))
    return queries
