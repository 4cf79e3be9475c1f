"""Content-addressed store of each catalogue image as decoded for the model (about 320 px), JPEG-encoded.

It serves the web page's thumbnails and lets `sourcelens reindex` re-embed the catalogue with another
model without going back to the factories' original files.
"""

import os
import tempfile
from pathlib import Path

from PIL import Image


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, content_hash: str) -> Path:
        return self.root / content_hash[:2] / f"{content_hash}.jpg"

    def save(self, content_hash: str, image: Image.Image) -> None:
        target = self.path(content_hash)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="JPEG", quality=90)
        os.replace(tmp, target)  # readers never see half a file

    def open(self, content_hash: str) -> Image.Image:
        with Image.open(self.path(content_hash)) as image:
            return image.convert("RGB")
