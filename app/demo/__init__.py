"""The offline demo and the tools that are not the service: the sample catalogue drawn by code
(sample_catalogue.py) and the search-quality evaluation (evaluation.py).

May import search, ingest, catalog, core and embeddings; never api or bootstrap.
"""

import logging
from pathlib import Path

from app.access.keys import KeyStore
from app.core.config import Settings
from app.demo.sample_catalogue import write_catalogue
from embeddings import OFFLINE_MODEL, Embedder, ModelLoadError, load_embedder

log = logging.getLogger(__name__)


def demo_catalogue(settings: Settings) -> Path:
    """The sample catalogue's manifest, drawn on first use (36 products from 6 factories)."""
    directory = settings.data_dir / "sample-catalogue"
    manifest = directory / "manifest.csv"
    if not manifest.exists():
        log.info("drawing the sample catalogue in %s", directory)
        write_catalogue(directory)
    return manifest


DEMO_FACTORY = "F001"


def demo_keys(keys: KeyStore, data_dir: Path) -> list[str]:
    """An admin key and a key for the first sample factory, made on the first run and kept (readable by the
    owner only) in the data directory, so every run can say how to write to the demo."""
    saved = data_dir / "demo-keys.txt"
    if not saved.exists():
        admin = keys.create("demo admin", "admin")
        factory = keys.create(f"demo factory {DEMO_FACTORY}", "factory", [DEMO_FACTORY])
        saved.write_text(f"admin key: {admin.token}\nfactory key ({DEMO_FACTORY}): {factory.token}\n")
        saved.chmod(0o600)
    return [
        *saved.read_text().splitlines(),
        "Search and the page need no key here; writes do: send 'Authorization: Bearer <key>'.",
    ]


def demo_model(settings: Settings, model_given: bool) -> Embedder:
    """The configured model; when CLIP weights cannot be had (no cache, no hub), fall back to effnet-lite0 and say
    so loudly. A model the user chose is not replaced."""
    spec = settings.resolved_model
    try:
        return _load(settings, spec)
    except ModelLoadError as exc:
        if model_given or spec == OFFLINE_MODEL:
            raise
        banner = "!" * 78
        log.warning(
            "\n%s\n  CLIP weights for %s could not be loaded:\n  %s\n  FALLING BACK to %s "
            "(ImageNet EfficientNet-Lite0, shipped with the package).\n  Search works; text search "
            "does not. With network access the default model downloads once.\n%s",
            banner,
            spec,
            exc,
            OFFLINE_MODEL,
            banner,
        )
        settings.model = OFFLINE_MODEL
        return _load(settings, OFFLINE_MODEL)


def _load(settings: Settings, spec: str) -> Embedder:
    return load_embedder(
        spec,
        precision=settings.precision,
        cache_dir=settings.model_cache_dir,
        batch_size=settings.embed_batch_size,
        hub_timeout_s=settings.hub_timeout_s,
        device=settings.device,
    )
