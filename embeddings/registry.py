"""`SOURCELENS_MODEL` spec → a loaded, precision-checked embedder.

Specs:
  openclip:ARCH:PRETRAINED   open_clip; PRETRAINED is a hub tag, a checkpoint path, or `random` (tests)
  effnet-lite0               ImageNet EfficientNet-Lite0, shipped as a package: works with no network
"""

import logging
from pathlib import Path

from embeddings.base import Embedder
from embeddings.openclip import ModelLoadError
from embeddings.precision import apply_precision

log = logging.getLogger(__name__)

OFFLINE_MODEL = "effnet-lite0"


def load_embedder(
    spec: str,
    *,
    precision: str = "auto",
    cache_dir: Path | None = None,
    batch_size: int = 32,
    hub_timeout_s: float = 3.0,
) -> Embedder:
    embedder = _load(spec.strip(), cache_dir, hub_timeout_s)
    embedder.batch_size = batch_size
    apply_precision(embedder, precision)
    log.info(
        "model %s loaded: dim %d, %s%s",
        embedder.name,
        embedder.dim,
        embedder.precision,
        f", bf16 cosine to fp32 {embedder.bf16_cosine:.5f}" if embedder.bf16_cosine else "",
    )
    return embedder


def _load(spec: str, cache_dir: Path | None, hub_timeout_s: float) -> Embedder:
    if spec == OFFLINE_MODEL:
        from embeddings.effnet import EffnetLite0Embedder

        return EffnetLite0Embedder()
    kind, _, rest = spec.partition(":")
    arch, _, pretrained = rest.partition(":")
    if kind == "openclip" and arch and pretrained:
        from embeddings.openclip import load_openclip

        return load_openclip(spec, arch, pretrained, cache_dir, hub_timeout_s)
    raise ModelLoadError(f"unknown model spec {spec!r}; use 'openclip:ARCH:PRETRAINED' or '{OFFLINE_MODEL}'")
