"""Choose bf16 or fp32 weights by measurement, not by hope.

bf16 is only worth it where the CPU has native bf16 matrix instructions (AVX512-BF16, AMX); there it
is several times faster. It is kept only if its embeddings stay within a cosine of 0.999 of fp32 on a
fixed probe batch, so a model that degrades in bf16 silently stays in fp32.
"""

import copy
import logging
from functools import cache
from pathlib import Path

import numpy as np
import torch

from embeddings.base import Embedder

log = logging.getLogger(__name__)

MIN_BF16_COSINE = 0.999


@cache
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def has_native_bf16(device: str) -> bool:
    """Whether bf16 runs natively where the model runs: the CPU's instructions, or the GPU's (Ampere and later)."""
    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    return cpu_has_native_bf16()


def probe_pixels(embedder: Embedder, count: int = 8, seed: int = 1234) -> np.ndarray:
    """Smooth random colour fields with edges: closer to photos than white noise, and fixed."""
    rng = np.random.default_rng(seed)
    size = embedder.preprocess.size
    coarse = rng.random((count, 3, 8, 8)).astype(np.float32)
    pixels = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bicubic")
    pixels[:, :, size // 3 : size // 2, :] = 0.9  # a hard edge, as products have
    return ((pixels - 0.45) / 0.27).numpy()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def apply_precision(embedder: Embedder, requested: str) -> Embedder:
    """Set embedder.precision and embedder.bf16_cosine from `requested` (auto, fp32, bf16)."""
    embedder.precision = "fp32"
    embedder.bf16_cosine = None
    if requested == "fp32" or (requested == "auto" and not has_native_bf16(embedder.device)):
        return embedder
    pixels = probe_pixels(embedder)
    reference = embedder.embed_pixels(pixels)
    fp32_module = embedder.module
    embedder.module = copy.deepcopy(fp32_module).to(torch.bfloat16)
    embedder.precision = "bf16"
    cosine = float(cosine_rows(reference, embedder.embed_pixels(pixels)).min())
    embedder.bf16_cosine = cosine
    if requested == "auto" and cosine < MIN_BF16_COSINE:
        log.info("bf16 embeddings of %s reach cosine %.5f < %s; keeping fp32", embedder.name, cosine, MIN_BF16_COSINE)
        embedder.module, embedder.precision = fp32_module, "fp32"
    return embedder
