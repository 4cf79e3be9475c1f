"""`SOURCELENS_MODEL` spec → a loaded, precision-checked embedder.

Specs:
  openclip:ARCH:PRETRAINED   open_clip; PRETRAINED is a hub tag, a checkpoint path, or `random` (tests)
  effnet-lite0               ImageNet EfficientNet-Lite0, shipped as a package: works with no network
"""

import logging
from pathlib import Path

import torch

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
    device: str = "cpu",
) -> Embedder:
    target = resolve_device(device)
    embedder = _load(spec.strip(), cache_dir, hub_timeout_s)
    embedder.batch_size = batch_size
    embedder.to_device(target)
    apply_precision(embedder, precision)
    log.info(
        "model %s loaded on %s: dim %d, %s%s",
        embedder.name,
        embedder.device,
        embedder.dim,
        embedder.precision,
        f", bf16 cosine to fp32 {embedder.bf16_cosine:.5f}" if embedder.bf16_cosine else "",
    )
    return embedder


def resolve_device(device: str) -> str:
    """`auto`: the first CUDA GPU where torch sees one, else the CPU. Asking for a GPU that is not there is an
    error that says so, not a silent fall back to a CPU a hundred times slower."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"SOURCELENS_DEVICE={device}, but torch sees no CUDA device here (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda or 'none'}): use auto or cpu, or install a CUDA build of torch"
        )
    return device


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
