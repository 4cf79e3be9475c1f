"""Helpers for tests: image bytes, services for a whole test module."""

import io

import pytest
from PIL import Image

from app.bootstrap import Services, build_services
from app.core.config import Settings
from embeddings import Embedder


def module_services(factory: pytest.TempPathFactory, model: Embedder, **overrides: object) -> Services:
    """Services on a fresh data directory, for a module-scoped fixture (which must close them)."""
    settings = Settings(data_dir=factory.mktemp("data"), model=model.name, **overrides)
    return build_services(settings, model)


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()
