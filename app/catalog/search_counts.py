"""How often each product was shown by a search, and how often as a confident match: what a factory sees of
the searches that found it (counts only: nothing about who searched or with what).

Searches only add to counters in memory; a thread writes them to the database every few seconds and at
shutdown, so the search path never waits on a write. Counts of a crash's last seconds are lost, by design.
"""

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.catalog.models import Product, ProductSearchCount
from app.core.db import utcnow
from app.core.periodic import Periodic

FLUSH_S = 10.0


@dataclass(frozen=True)
class SearchCount:
    product_id: str
    shown: int
    confident: int
    last_at: datetime


class SearchCounter:
    def __init__(self, sessions: sessionmaker[Session], flush_s: float = FLUSH_S) -> None:
        self.sessions = sessions
        self.flush_s = flush_s
        self._shown: Counter[str] = Counter()
        self._confident: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._writer = Periodic("search-counts", flush_s, self.flush)

    def record(self, shown: set[str], confident: set[str]) -> None:
        """One search's page: the products it showed, and those among them it called confident matches."""
        with self._lock:
            self._shown.update(shown)
            self._confident.update(confident)

    def flush(self) -> None:
        with self._lock:
            shown, confident = self._shown, self._confident
            self._shown, self._confident = Counter(), Counter()
        if not shown:
            return
        with self.sessions.begin() as session:
            existing = set(session.scalars(select(Product.id).where(Product.id.in_(list(shown)))))
            for product_id in existing:  # a product deleted since is simply not counted
                row = session.get(ProductSearchCount, product_id)
                if row is None:
                    row = ProductSearchCount(product_id=product_id, shown=0, confident=0)
                    session.add(row)
                row.shown += shown[product_id]
                row.confident += confident[product_id]
                row.last_at = utcnow()

    def counts(self, factory_id: str) -> list[SearchCount]:
        with self.sessions() as session:
            rows = session.execute(
                select(ProductSearchCount)
                .join(Product, Product.id == ProductSearchCount.product_id)
                .where(Product.factory_id == factory_id)
                .order_by(ProductSearchCount.shown.desc(), ProductSearchCount.product_id)
            ).scalars()
            return [SearchCount(r.product_id, r.shown, r.confident, r.last_at) for r in rows]

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        """Stop writing every few seconds, and write what is left."""
        self._writer.stop()
        self.flush()
