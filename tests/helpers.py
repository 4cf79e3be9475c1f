"""Helpers for tests: image bytes, services for a whole test module."""

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.bootstrap import Services, build_services
from app.core.config import Settings
from embeddings import Embedder

# TestClient's requests come from "testclient" to host "testserver"; tests other than the rate-limit ones send
# far more than a person would.
TEST_SETTINGS: dict[str, object] = {
    "allowed_hosts": ["testserver"],
    "rate_limit_per_address": "1000000/minute",
    "rate_limit_per_key": "1000000/minute",
}


def vector_store_for(directory: Path) -> dict[str, str]:
    """SOURCELENS_TEST_VECTOR_STORE=milvus-lite runs the suite's services on a Milvus Lite file in `directory`
    instead of a FAISS index (`.ci/run` runs tests/api once that way)."""
    if os.environ.get("SOURCELENS_TEST_VECTOR_STORE") == "milvus-lite":
        return {"vector_store": str(directory / "vectors.db")}
    return {}


def module_services(factory: pytest.TempPathFactory, model: Embedder, **overrides: object) -> Services:
    """Services on a fresh data directory, for a module-scoped fixture (which must close them)."""
    data_dir = factory.mktemp("data")
    settings = Settings(
        data_dir=data_dir, model=model.name, **{**TEST_SETTINGS, **vector_store_for(data_dir), **overrides}
    )
    return build_services(settings, model)


def authorize(client: TestClient, services: Services, role: str = "admin", factories: tuple[str, ...] = ()) -> str:
    """Make a key and send it with every request of the client; returns the token."""
    token = services.keys.create(f"test {role}", role, factories).token
    client.headers["Authorization"] = f"Bearer {token}"
    return token


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


@contextmanager
def live_server(services: Services) -> Iterator[str]:
    """The app served by uvicorn on a free local port, in a thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    from app.main import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(services.settings, services), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def catalogue_image(catalogue: Path, name: str) -> Path:
    return catalogue.parent / "images" / name


def screenshot(driver, name: str) -> None:
    """Saved into $SOURCELENS_SCREENSHOTS when it is set (the README's pictures: docs/images)."""
    if folder := os.environ.get("SOURCELENS_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))
