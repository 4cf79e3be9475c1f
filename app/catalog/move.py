"""Move the catalogue's vectors to another vector store (FAISS ↔ Milvus) while searches go on against the old
one: `sourcelens reindex --to URI`.

Vectors come from the database (each image's stored embedding, with its catalogue fields), not from the old
store, in id order and in chunks. Progress is kept in a small state file after each chunk the target has made
durable, so an interrupted move resumes where it stopped. A last reconcile brings in images added during the
copy and drops those deleted meanwhile; what changes after it is picked up by the reconcile every process
runs at start, once it is switched to the new store.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.catalog.index_sync import reconcile, upsert_from_db
from app.catalog.models import Image
from index import VectorIndex

log = logging.getLogger(__name__)
CHUNK = 4096
FAISS_SAVE_EVERY = 65_536  # a FAISS save writes the whole index: after this many vectors, not every chunk


@dataclass(frozen=True)
class MoveReport:
    copied: int  # vectors written by this run
    resumed_after: int  # the image id an earlier, interrupted run had reached (0: a fresh start)
    added: int  # by the final reconcile: images added during the copy
    removed: int  # by the final reconcile: images deleted during the copy
    total: int  # vectors in the target at the end


def move_vectors(
    sessions: sessionmaker[Session],
    target: VectorIndex,
    target_name: str,
    state: Path,
    progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
) -> MoveReport:
    """Copy every stored vector into `target` (named `target_name`: its address), resumably."""
    key = f"{target_name} {target.embedder}"
    resumed_after = _last_copied(state, key)
    done_to, copied, unsaved = resumed_after, 0, 0
    while True:
        with sessions() as session:
            query = select(Image.id).where(Image.id > done_to).order_by(Image.id).limit(chunk)
            ids = list(session.scalars(query))
            if not ids:
                break
            upsert_from_db(session, target, ids)
        copied, unsaved, done_to = copied + len(ids), unsaved + len(ids), ids[-1]
        if not target.dirty or unsaved >= FAISS_SAVE_EVERY:  # Milvus: durable already; FAISS: now and then
            target.save()
            _remember(state, key, done_to)
            unsaved = 0
        if progress:
            progress(len(ids))
    with sessions() as session:
        repaired = reconcile(session, target)
    target.save()
    state.unlink(missing_ok=True)
    return MoveReport(copied, resumed_after, repaired.added, repaired.removed, len(target))


def _last_copied(state: Path, key: str) -> int:
    """The last image id copied to this very target by an interrupted run (0 for another target, or none)."""
    try:
        saved = json.loads(state.read_text())
    except (OSError, ValueError):
        return 0
    return int(saved["last_id"]) if saved.get("target") == key else 0


def _remember(state: Path, key: str, last_id: int) -> None:
    temporary = state.with_suffix(".tmp")
    temporary.write_text(json.dumps({"target": key, "last_id": last_id}))
    temporary.replace(state)
