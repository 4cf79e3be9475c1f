"""Each catalogue image's local features (keypoints, descriptors, thumbnails: whatever search/verify.py keeps),
stored once by content hash beside the media store, so that a search extracts only its own photo's.

An uncompressed .npz per image (about 25 KB), written atomically; this module knows arrays, not their meaning.
"""

import io
import os
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np

# numpy reads each array's header with ast.literal_eval, and CPython 3.11 before 3.11.8 can raise a spurious
# "SystemError: AST constructor recursion depth mismatch" when two threads build ASTs at once (python/cpython
# gh-106905): searches load features on several verification threads. Reading is 0.1 ms; the lock costs little.
_READING = threading.Lock()


class LocalFeatureStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, content_hash: str) -> Path:
        return self.root / content_hash[:2] / f"{content_hash}.npz"

    def save(self, content_hash: str, arrays: dict[str, np.ndarray]) -> None:
        target = self.path(content_hash)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        # numpy's stubs type savez's **kwds as its allow_pickle flag: the arrays are passed through Any.
        cast(Any, np.savez)(buffer, **arrays)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, target)  # readers never see half a file

    def load(self, content_hash: str) -> dict[str, np.ndarray] | None:
        """The stored arrays; None when there are none yet, or the file is damaged (they are made again)."""
        try:
            with _READING, np.load(self.path(content_hash), allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            return None
