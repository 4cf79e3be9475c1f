"""open_clip image (and text) towers: hub tags, local checkpoints, or random weights for tests."""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from embeddings.base import Embedder, Preprocess, normalise

log = logging.getLogger(__name__)

# A tiny architecture shipped for tests (`openclip:sourcelens-tiny:random`): real open_clip code, seconds to run.
_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(_CONFIG_DIR)


class ModelLoadError(RuntimeError):
    pass


class OpenClipEmbedder(Embedder):
    # open_clip's CLIP model: its visual tower and encoders are attributes torch.nn.Module types as Any.
    module: Any

    def __init__(self, name: str, model: Any, tokenizer: Callable[[list[str]], torch.Tensor]) -> None:
        cfg = model.visual.preprocess_cfg
        size = cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"]
        super().__init__(model, Preprocess(size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"])))
        self.name = name
        self.dim = int(model.visual.output_dim)
        self.tokenizer = tokenizer

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(pixels)

    @property
    def supports_text(self) -> bool:
        return True

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts))
        with self._lock, torch.inference_mode():
            features = self.module.encode_text(tokens).float()
        return normalise(features.numpy())


def load_openclip(name: str, arch: str, pretrained: str, cache_dir: Path | None) -> OpenClipEmbedder:
    """`pretrained` is an open_clip tag (downloaded once, then cached), a checkpoint path, or 'random'."""
    if arch not in open_clip.list_models():
        raise ModelLoadError(f"unknown open_clip architecture {arch!r}")
    weights = _resolve_weights(arch, pretrained)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)  # `random` weights are the same on every load, so tests can compare runs
            model = open_clip.create_model(
                arch,
                pretrained=weights,
                cache_dir=str(cache_dir) if cache_dir else None,
                require_pretrained=bool(weights),
            )
    except Exception as exc:  # open_clip raises RuntimeError/OSError/KeyError for bad or missing weights
        raise ModelLoadError(f"could not load open_clip {arch} weights {pretrained!r}: {exc}") from exc
    return OpenClipEmbedder(name, model, open_clip.get_tokenizer(arch))


def _resolve_weights(arch: str, pretrained: str) -> str | None:
    if pretrained == "random":
        return None
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path)
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if pretrained in tags:
        return pretrained
    raise ModelLoadError(
        f"{pretrained!r} is neither a file nor a pretrained tag of {arch} (tags: {', '.join(tags) or 'none'})"
    )
