"""A live server on the small catalogue, with an admin key, for the client and the CLI against it."""

from pathlib import Path

import pytest
from helpers import live_server, module_services

from app.client import SourceLens


@pytest.fixture(scope="module")
def server(tmp_path_factory, effnet_embedder, catalogue):
    services = module_services(tmp_path_factory, effnet_embedder, allowed_hosts=["127.0.0.1"], embed_batch_size=16)
    assert services.ingest.ingest_manifest(catalogue).added == 28
    admin = services.keys.create("client tests", "admin").token
    with live_server(services) as url:
        yield url, admin
    services.close()


@pytest.fixture
def lens(server):
    url, admin = server
    with SourceLens(url, key=admin) as client:
        yield client


def photo(catalogue: Path, name: str) -> Path:
    return catalogue.parent / "images" / name
