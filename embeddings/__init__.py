"""Image loading and embedding models."""

from embeddings.base import Embedder, TextNotSupported
from embeddings.loader import ImageError, ImageTooLarge, LoadedImage, NotAnImage, load_image
from embeddings.openclip import ModelLoadError
from embeddings.registry import OFFLINE_MODEL, load_embedder

__all__ = [
    "OFFLINE_MODEL",
    "Embedder",
    "ImageError",
    "ImageTooLarge",
    "LoadedImage",
    "ModelLoadError",
    "NotAnImage",
    "TextNotSupported",
    "load_embedder",
    "load_image",
]
