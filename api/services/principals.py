"""A short-lived cache of resolved principals (built once, in the composition root), and the session listeners
that empty it whenever anything that decides authentication is written."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session, UOWTransaction

from api.services.access import AccessService
from api.services.identity import Principal, hash_secret
from engine.db.models import ApiToken, Membership, User, Workspace


class PrincipalCache:
    """Resolved principals for a few seconds, so a request does not read the database to know its caller.

    Revocation still wins at once: any write to tokens, memberships, users or workspaces in this process (ORM
    flushes and bulk statements alike, see the listeners below) empties the cache when it commits, and a lookup
    that overlapped such a write is not cached. Another process's write (a second server on the same database, a
    CLI command) is seen within ``ttl_s``: one second, the bound the security checklist sets for a revoked token
    on every worker (it was 5 s). A cached token then costs its process one database read a second, whatever
    the request rate. An entry never outlives its token's expiry. Misses and refusals are not cached: an unknown
    token always asks the database.
    """

    def __init__(self, access: AccessService, *, ttl_s: float = 1.0, max_entries: int = 10_000) -> None:
        self.access = access
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._generation = 0
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str | None], tuple[float, Principal]] = {}
        _CACHES.add(self)  # the session listeners below empty every cache of this process

    async def authenticate(self, secret: str, workspace_id: str | None) -> Principal:
        access = self.access
        key = (hash_secret(secret), workspace_id)
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        generation = self._generation
        principal = await access.authenticate(secret, workspace_id=workspace_id)
        async with access.sessions() as session:  # a miss only: at most once per ttl_s per token
            expires = await session.scalar(select(ApiToken.expires_at).where(ApiToken.id == principal.token_id))
        left = self.ttl_s if expires is None else min(self.ttl_s, expires - time.time())
        until = time.monotonic() + left
        with self._lock:
            if generation == self._generation:  # no auth write committed while we looked it up
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (until, principal)
        return principal

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


_CACHES: weakref.WeakSet[PrincipalCache] = weakref.WeakSet()  # one per app (tests run several in one process)


def _invalidate_all() -> None:
    for cache in list(_CACHES):
        cache.invalidate()
_AUTH_ROWS = (ApiToken, Membership, User, Workspace)
_CHANGED = "ragline_auth_changed"


def _auth_rows_changed(session: Session) -> bool:
    for row in (*session.new, *session.deleted):
        if isinstance(row, _AUTH_ROWS):
            return True
    for row in session.dirty:
        if isinstance(row, _AUTH_ROWS):
            state: InstanceState[Any] = inspect(row)
            changed = {a.key for a in state.attrs if a.history.has_changes()}
            if changed - {"last_used_at", "updated_at"}:  # authenticate's own coarse usage stamp is not a change
                return True
    return False


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _flush: UOWTransaction) -> None:
    if _auth_rows_changed(session):
        session.info[_CHANGED] = True
        _invalidate_all()


@event.listens_for(Session, "do_orm_execute")
def _bulk_write(state: ORMExecuteState) -> None:
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and issubclass(mapper.class_, _AUTH_ROWS):
        state.session.info[_CHANGED] = True
        _invalidate_all()


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # again after the commit: a lookup between the flush and the commit read the old rows and may have cached them
    if session.info.pop(_CHANGED, False):
        _invalidate_all()
