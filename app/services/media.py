"""Content-addressed store of each catalogue image, reduced to at most 512 px and JPEG-encoded.

It serves the web page's thumbnails and lets `sourcelens reindex` re-embed the catalogue with another
model without going back to the factories' original files.
"""

import os
import tempfile
from pathlib import Path

from PIL import Image

STORED_SIDE = 512


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
        copy = image.copy()
        copy.thumbnail((STORED_SIDE, STORED_SIDE), Image.Resampling.BICUBIC)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            copy.save(handle, format="JPEG", quality=90)
        os.replace(tmp, target)  # readers never see half a file

    def open(self, content_hash: str) -> Image.Image:
        with Image.open(self.path(content_hash)) as image:
            return image.convert("RGB")
