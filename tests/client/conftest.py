"""A live server on the small catalogue, with an admin key, for the client and the CLI against it; and a
local web server holding the catalogue's images, which the service may fetch (it is allow-listed)."""

import pytest
from helpers import live_server, module_services

from app.client import SourceLens


@pytest.fixture(scope="module")
def server(tmp_path_factory, effnet_embedder, catalogue, images_site):
    services = module_services(
        tmp_path_factory,
        effnet_embedder,
        allowed_hosts=["127.0.0.1"],
        embed_batch_size=16,
        url_allow_hosts=[images_site.removeprefix("http://")],
    )
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
