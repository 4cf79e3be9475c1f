"""The embedder contract: pictures in, L2-normalised float32 vectors out.

Preprocessing (resize, crop, normalise) is split from the forward pass so that ingestion can decode
and preprocess on several threads while the model runs batches on the others.
"""

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image


class TextNotSupported(RuntimeError):
    """The embedder has no text tower."""


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `size` (bicubic), centre-crop a square, normalise per channel.

    This is what open_clip's and timm's eval transforms do, written with PIL and NumPy so it needs
    no torchvision call per image and can run in any thread.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Each channel's 256 levels already normalised: one table look-up a pixel instead of a conversion to float
    # and three passes of arithmetic over the image (0.40 -> 0.15 ms at 224 px), the same float32 values.
    _levels: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
        mean, std = np.asarray(self.mean, np.float32)[:, None], np.asarray(self.std, np.float32)[:, None]
        object.__setattr__(self, "_levels", (levels[None, :] - mean) / std)  # (3, 256)

    def __call__(self, image: Image.Image) -> np.ndarray:
        width, height = image.size
        # Same arithmetic as torchvision's Resize(int): the longer side is truncated, not rounded.
        if width <= height:
            new_size = (self.size, int(self.size * height / width))
        else:
            new_size = (int(self.size * width / height), self.size)
        rgb_image = image if image.mode == "RGB" else image.convert("RGB")
        resized = rgb_image.resize(new_size, Image.Resampling.BICUBIC)
        left = round((new_size[0] - self.size) / 2.0)
        top = round((new_size[1] - self.size) / 2.0)
        rgb = np.asarray(resized.crop((left, top, left + self.size, top + self.size)))
        pixels = np.empty((3, self.size, self.size), np.float32)
        for channel in range(3):
            np.take(self._levels[channel], rgb[:, :, channel], out=pixels[channel])
        return pixels


class Embedder(ABC):
    """One loaded image model. Thread-safe: forward passes are serialised by a lock."""

    name: str  # the spec it was loaded from; recorded in the index
    dim: int
    precision: str  # "fp32" or "bf16"
    batch_size: int = 32
    bf16_cosine: float | None = None  # measured when bf16 was considered
    device: str = "cpu"  # where the weights live and the forward runs ("cuda", "cuda:1" on a GPU machine)

    def __init__(self, module: torch.nn.Module, preprocess: Preprocess) -> None:
        self.module = module.eval()
        self.preprocess = preprocess
        self._lock = threading.Lock()

    @abstractmethod
    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) image features for a batch of preprocessed pixels."""

    @property
    def supports_text(self) -> bool:
        return False

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        raise TextNotSupported(f"model {self.name} has no text encoder")

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) preprocessed float32 → (N, dim) unit-length float32."""
        out = [self._embed_chunk(pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)]
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(out)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_pixels(np.stack([self.preprocess(image) for image in images]))

    def to_device(self, device: str) -> None:
        """Move the weights to `device` (before precision is chosen: bf16 copies keep it)."""
        self.module = self.module.to(device)
        self.device = device

    def _embed_chunk(self, pixels: np.ndarray) -> np.ndarray:
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        batch = torch.from_numpy(np.ascontiguousarray(pixels))
        # On a GPU the pixels cross as float32 and are cast there; on the CPU this is the cast alone.
        batch = batch.to(self.device, non_blocking=self.device != "cpu").to(dtype)
        with self._lock, torch.inference_mode():
            features = self._forward(batch).float().cpu()
        return normalise(features.numpy())


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
