"""Who is asking, as the services see it: a role, and for a factory key the factories it may write."""

from dataclasses import dataclass
from enum import StrEnum

from app.core.errors import ForbiddenError


class Role(StrEnum):
    ADMIN = "admin"  # everything
    FACTORY = "factory"  # writes its own factories' catalogue and ingest jobs; sees only those jobs
    SEARCH = "search"  # searches and public catalogue reads


@dataclass(frozen=True)
class Principal:
    role: Role | None  # None: an anonymous caller
    factory_ids: frozenset[str] = frozenset()  # for a factory key, the factories it may write
    key_id: int | None = None
    name: str = "anonymous"

    @classmethod
    def system(cls) -> "Principal":
        """The operator at the command line: an admin without a key."""
        return cls(Role.ADMIN, name="system")

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def owns(self, owner_key_id: int | None) -> bool:
        """What a key made (a batch query job, a saved search) is its own, and every admin's to see."""
        return self.is_admin or (owner_key_id is not None and owner_key_id == self.key_id)

    def may_write(self, factory_id: str) -> bool:
        return self.is_admin or (self.role == Role.FACTORY and factory_id in self.factory_ids)

    def check_write(self, factory_id: str) -> None:
        if not self.may_write(factory_id):
            raise ForbiddenError(f"this key may not change factory {factory_id!r}")

    def sees_job(self, job_factory_ids: list[str]) -> bool:
        """Admins see every job; a factory key sees the jobs submitted for factories it may all write."""
        if self.is_admin:
            return True
        return self.role == Role.FACTORY and bool(job_factory_ids) and set(job_factory_ids) <= self.factory_ids
