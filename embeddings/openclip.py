"""open_clip image (and text) towers: hub tags, local checkpoints, or random weights for tests."""

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from embeddings.base import Embedder, Preprocess, normalise
from embeddings.hub import HUB_HOST, hub_reachable, offline

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
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._lock, torch.inference_mode():
            features = self.module.encode_text(tokens).float().cpu()
        return normalise(features.numpy())


def load_openclip(
    name: str, arch: str, pretrained: str, cache_dir: Path | None, hub_timeout_s: float = 3.0
) -> OpenClipEmbedder:
    """`pretrained` is an open_clip tag (downloaded once, then cached), a checkpoint path, or 'random'. A tag's
    weights come from the cache alone when the hub does not answer within `hub_timeout_s`."""
    if arch not in open_clip.list_models():
        raise ModelLoadError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models())")
    weights = _resolve_weights(arch, pretrained)
    from_hub = weights is not None and not Path(weights).is_file()
    reachable = not from_hub or hub_reachable(hub_timeout_s)
    try:
        with torch.random.fork_rng(), nullcontext() if reachable else offline():
            torch.manual_seed(0)  # `random` weights are the same on every load, so tests can compare runs
            model = open_clip.create_model(
                arch,
                pretrained=weights,
                cache_dir=str(cache_dir) if cache_dir else None,
                require_pretrained=bool(weights),
            )
    except Exception as exc:  # open_clip raises RuntimeError/OSError/KeyError for bad or missing weights
        if not reachable:
            where = cache_dir or "the Hugging Face cache (~/.cache/huggingface)"
            raise ModelLoadError(
                f"cannot load model {name}: its weights are not in {where} and {HUB_HOST} cannot be reached. "
                f"Point SOURCELENS_MODEL at a local checkpoint (openclip:{arch}:/path/to/weights.pt), use the "
                "offline model (SOURCELENS_MODEL=effnet-lite0), or set SOURCELENS_MODEL_FALLBACK=effnet-lite0"
            ) from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model {name}: {first_line}") from exc
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
