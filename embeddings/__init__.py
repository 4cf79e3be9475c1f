"""Image models and decoding: the embedder interface and its backends (open_clip, EfficientNet-Lite0), the
loader that turns untrusted bytes into pictures, and the scheduler that owns the model's CPU.

Imports nothing from app or index.
"""

from embeddings.base import Embedder, Preprocess, TextNotSupported, normalise
from embeddings.loader import ImageDecoder, ImageError, ImageTooLarge, LoadedImage, NotAnImage, load_image
from embeddings.openclip import ModelLoadError
from embeddings.registry import OFFLINE_MODEL, load_embedder
from embeddings.scheduler import ModelScheduler, SchedulerBusy, SchedulerPolicy, SchedulerStats, Ticket

__all__ = [
    "OFFLINE_MODEL",
    "Embedder",
    "ImageDecoder",
    "ImageError",
    "ImageTooLarge",
    "LoadedImage",
    "ModelLoadError",
    "ModelScheduler",
    "NotAnImage",
    "Preprocess",
    "SchedulerBusy",
    "SchedulerPolicy",
    "SchedulerStats",
    "TextNotSupported",
    "Ticket",
    "load_embedder",
    "load_image",
    "normalise",
]
