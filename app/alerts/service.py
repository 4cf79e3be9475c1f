"""Saved searches: each saved photo is searched again whenever the catalogue has gained images since it was
last checked; a confident match on an image added since is recorded once, listed for polling and, where the
search has a webhook, delivered there (POST, JSON, public addresses only; retried at the next check until it
answers 2xx).
"""

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.alerts.models import SavedMatch, SavedSearch
from app.catalog.models import Image
from app.core.access import Principal
from app.core.errors import AuthenticationError, InvalidInputError, NotFoundError
from app.ingest.fetch import FetchError, FetchPolicy, check_url, post_json
from app.search.options import QueryPhoto, SearchOptions
from app.search.pipeline import SearchService

log = logging.getLogger(__name__)
WATCHED = 50  # factories looked at per check: a new image ranks among the best or is not a confident match


@dataclass(frozen=True)
class SavedInfo:
    id: int
    name: str
    webhook_url: str | None
    checked_to: int
    created_at: datetime
    matches: int


@dataclass(frozen=True)
class MatchInfo:
    id: int
    image_id: int
    product_id: str
    factory_id: str
    match_level: str
    similarity: float
    found_at: datetime
    delivered: bool


class SavedSearches:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        search: SearchService,
        photos_dir: Path,
        webhook_policy: FetchPolicy,
        max_per_key: int,
        max_photo_bytes: int,
    ) -> None:
        self.sessions = sessions
        self.search = search
        self.photos_dir = photos_dir
        self.webhook_policy = webhook_policy
        self.max_per_key = max_per_key
        self.max_photo_bytes = max_photo_bytes

    def create(self, photo: bytes, name: str, webhook_url: str | None, owner: Principal) -> SavedInfo:
        """Save a photo to watch; what the catalogue holds now is not news, only what is added later."""
        if owner.role is None or owner.key_id is None:
            raise AuthenticationError("saved searches need an API key")
        if webhook_url:
            try:
                check_url(webhook_url, self.webhook_policy.allow_hosts)
            except FetchError as exc:
                raise InvalidInputError(f"webhook_url: {exc}") from None
        self.search.run([QueryPhoto(photo)], None, SearchOptions(top_k=1, verify=False))  # a photo it can read
        digest = hashlib.sha256(photo).hexdigest()
        self.photos_dir.mkdir(parents=True, exist_ok=True)
        (self.photos_dir / digest).write_bytes(photo)
        with self.sessions.begin() as session:
            count = session.scalar(select(func.count()).where(SavedSearch.owner_key_id == owner.key_id)) or 0
            if count >= self.max_per_key:
                raise InvalidInputError(f"this key has {count} saved searches; the limit is {self.max_per_key}")
            saved = SavedSearch(
                owner_key_id=owner.key_id,
                name=name,
                photo_hash=digest,
                webhook_url=webhook_url or None,
                checked_to=_newest_image(session),
            )
            session.add(saved)
            session.flush()
            saved_id = saved.id
        return self.get(saved_id, owner)

    def get(self, saved_id: int, viewer: Principal) -> SavedInfo:
        with self.sessions() as session:
            return _info(session, self._visible(session, saved_id, viewer))

    def recent(self, viewer: Principal) -> list[SavedInfo]:
        statement = select(SavedSearch).order_by(SavedSearch.id)
        if not viewer.is_admin:
            statement = statement.where(SavedSearch.owner_key_id == viewer.key_id)
        with self.sessions() as session:
            return [_info(session, saved) for saved in session.scalars(statement)]

    def matches(self, saved_id: int, viewer: Principal) -> list[MatchInfo]:
        with self.sessions() as session:
            self._visible(session, saved_id, viewer)
            rows = session.scalars(select(SavedMatch).where(SavedMatch.saved_id == saved_id).order_by(SavedMatch.id))
            return [_match(row) for row in rows]

    def delete(self, saved_id: int, viewer: Principal) -> None:
        with self.sessions.begin() as session:
            saved = self._visible(session, saved_id, viewer)
            session.delete(saved)

    def check_all(self) -> int:
        """Search each saved photo again if the catalogue has grown since its last check; record the new
        confident matches; deliver webhooks not yet delivered. Returns the matches found."""
        with self.sessions() as session:
            newest = _newest_image(session)
            stale = list(session.execute(select(SavedSearch.id, SavedSearch.photo_hash, SavedSearch.checked_to)))
        found = 0
        for saved_id, photo_hash, checked_to in stale:
            if checked_to < newest:
                try:
                    found += self._check(saved_id, photo_hash, checked_to, newest)
                except Exception:  # one saved search's trouble does not stop the others'
                    log.exception("saved search %s: check failed", saved_id)
        self._deliver()
        return found

    def _check(self, saved_id: int, photo_hash: str, checked_to: int, newest: int) -> int:
        try:
            photo = (self.photos_dir / photo_hash).read_bytes()
        except OSError:
            log.warning("saved search %s: its photo is gone", saved_id)
            return 0
        result = self.search.run([QueryPhoto(photo)], None, SearchOptions(top_k=WATCHED))
        new = [
            hit for ranked in result.factories for hit in ranked.matches if hit.confident and hit.image_id > checked_to
        ]
        with self.sessions.begin() as session:
            saved = session.get(SavedSearch, saved_id)
            if saved is None:
                return 0  # deleted meanwhile
            for hit in new:
                session.add(
                    SavedMatch(
                        saved_id=saved_id,
                        image_id=hit.image_id,
                        product_id=hit.product_id,
                        factory_id=hit.factory_id,
                        match_level=hit.level.value,
                        similarity=round(hit.similarity, 4),
                        delivered=saved.webhook_url is None,
                    )
                )
            saved.checked_to = newest
            try:
                session.flush()
            except IntegrityError:  # found by a check that ran alongside: keep theirs
                session.rollback()
                return 0
        return len(new)

    def _deliver(self) -> None:
        with self.sessions() as session:
            pending = session.execute(
                select(SavedMatch, SavedSearch.webhook_url, SavedSearch.name)
                .join(SavedSearch, SavedSearch.id == SavedMatch.saved_id)
                .where(SavedMatch.delivered.is_(False))
                .order_by(SavedMatch.id)
            ).all()
        for match, url, name in pending:
            if url is None:
                continue
            payload: dict[str, Any] = {"saved_search": {"id": match.saved_id, "name": name}, **_payload(match)}
            try:
                delivered = 200 <= post_json(url, payload, self.webhook_policy) < 300
            except FetchError as exc:
                log.warning("saved search %s: webhook not delivered: %s", match.saved_id, exc)
                delivered = False
            if delivered:
                with self.sessions.begin() as session:
                    row = session.get(SavedMatch, match.id)
                    if row is not None:
                        row.delivered = True

    def _visible(self, session: Session, saved_id: int, viewer: Principal) -> SavedSearch:
        saved = session.get(SavedSearch, saved_id)
        if saved is None or not viewer.owns(saved.owner_key_id):
            raise NotFoundError(f"saved search {saved_id} not found")
        return saved


def _newest_image(session: Session) -> int:
    return session.scalar(select(func.max(Image.id))) or 0


def _info(session: Session, saved: SavedSearch) -> SavedInfo:
    count = session.scalar(select(func.count()).where(SavedMatch.saved_id == saved.id)) or 0
    return SavedInfo(saved.id, saved.name, saved.webhook_url, saved.checked_to, saved.created_at, count)


def _match(row: SavedMatch) -> MatchInfo:
    return MatchInfo(
        row.id,
        row.image_id,
        row.product_id,
        row.factory_id,
        row.match_level,
        row.similarity,
        row.found_at,
        row.delivered,
    )


def _payload(match: SavedMatch) -> dict[str, Any]:
    return {
        "image_id": match.image_id,
        "product_id": match.product_id,
        "factory_id": match.factory_id,
        "match_level": match.match_level,
        "similarity": match.similarity,
        "found_at": match.found_at.isoformat(),
    }
