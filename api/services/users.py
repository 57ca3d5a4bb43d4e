"""Users with passwords: login (username and password -> an expiring API token), logout, password
changes, and user management by workspace admins (``/api/v1/users``).

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile) in worker
threads, a few at a time; a password is never stored, logged or returned. A failed login is always the
same answer (``InvalidCredentials``, 401) after the same work: an unknown user, or one without a
password, is verified against a dummy hash. Login attempts are limited per username and per client
address (a moving window in this process's memory; checking a current password counts against the user).

Users are global, memberships belong to workspaces. An admin manages the members of their workspace:
the role there is the admin's to set, but a user's name and password count in every workspace the user
is in, so an admin changes them only for users all of whose workspaces that admin administers. Names
are unique (409), and the database enforces it for users with a password (revision 0004).
"""

from __future__ import annotations

import math
import secrets
import time
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.access import issue_token
from api.services.identity import ROLE_RANK, ROLES, NotAuthenticated, Paged, Principal
from engine.db.models import ApiToken, Membership, TokenAudit, User, new_id, now
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied, RateLimited

LOGIN_TOKEN_NAME = "login"


class InvalidCredentials(NotAuthenticated):
    """A failed login: unknown user, no password or a wrong one (one answer for all three)."""


class UserInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A member of the caller's workspace, as admins see them: never the password or its hash."""

    id: str
    name: str
    role: str  # in the caller's workspace
    has_password: bool
    created_at: datetime


class LoginUser(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    role: str  # in the token's workspace


class LoginResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``POST /login`` answers: the new API token (shown once) and who it belongs to."""

    token: str
    token_type: str
    expires_at: datetime
    user: LoginUser
    workspace_id: str


class Passwords:
    """Argon2id hashing off the event loop, at most ``parallel`` at once (each takes 64 MiB for ~0.1 s)."""

    def __init__(self, hasher: PasswordHasher | None = None, *, parallel: int = 4) -> None:
        self.hasher = hasher or PasswordHasher()
        self._slots = anyio.CapacityLimiter(parallel)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hasher.hash, password, limiter=self._slots)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; with no hash, the same work against a dummy one."""
        if self._dummy is None:  # made once, before the first verification of any kind
            self._dummy = await self.hash(secrets.token_urlsafe(24))
        target = stored if stored is not None else self._dummy

        def check() -> bool:
            try:
                return self.hasher.verify(target, password)
            except (VerificationError, InvalidHashError):
                return False

        matched = await anyio.to_thread.run_sync(check, limiter=self._slots)
        return matched and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)


class LoginLimiter:
    """Login attempts per username and per client address in a moving one-minute window."""

    def __init__(self, *, per_user: int, per_address: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_user = RateLimitItemPerMinute(max(1, per_user))
        self._per_address = RateLimitItemPerMinute(max(1, per_address))

    def attempt(self, *, username: str, address: str | None = None) -> None:
        """Count one attempt; ``RateLimited`` (429 with Retry-After) beyond either budget."""
        checks = [(self._per_user, "user", username)]
        if address is not None:
            checks.insert(0, (self._per_address, "address", address))
        for item, kind, key in checks:
            if not self._limiter.hit(item, kind, key):
                reset = self._limiter.get_window_stats(item, kind, key).reset_time
                raise RateLimited("too many login attempts; try again later", retry_after=max(1.0, reset - time.time()))


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)  # encoded as ISO-8601, e.g. "2026-01-15T10:30:00Z"


def _view(user: User, role: str) -> UserInfo:
    return UserInfo(
        id=user.id, name=user.name, role=role, has_password=user.password_hash is not None,
        created_at=utc(user.created_at),
    )  # fmt: skip


class UserService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        token_ttl_s: float,
        attempts_per_user: int = 10,
        attempts_per_address: int = 30,
        passwords: Passwords | None = None,
    ) -> None:
        self.sessions = sessions
        self.token_ttl_s = token_ttl_s
        self.passwords = passwords or Passwords()
        self.limiter = LoginLimiter(per_user=attempts_per_user, per_address=attempts_per_address)

    # -- login, logout, own password ------------------------------------------------------------

    async def login(
        self, username: str, password: str, *, address: str, workspace_id: str | None = None
    ) -> LoginResult:
        """An API token for the user, valid ``token_ttl_s``, in their oldest workspace or ``workspace_id``."""
        self.limiter.attempt(username=username, address=address)
        async with self.sessions() as session:
            user = await session.scalar(select(User).where(User.name == username, User.password_hash.is_not(None)))
        stored = user.password_hash if user is not None else None
        if not await self.passwords.verify(stored, password) or user is None or stored is None:
            raise InvalidCredentials()
        rehashed = await self.passwords.hash(password) if self.passwords.needs_rehash(stored) else None
        async with self.sessions() as session:
            query = select(Membership).where(Membership.user_id == user.id)
            if workspace_id is not None:
                query = query.where(Membership.workspace_id == workspace_id)
            member = await session.scalar(query.order_by(Membership.created_at, Membership.workspace_id).limit(1))
            if member is None:
                if workspace_id is not None:
                    raise NotFound("workspace", workspace_id)
                raise PermissionDenied("this user is not a member of any workspace")
            if rehashed is not None:
                row = await session.get(User, user.id)
                if row is not None and row.password_hash == stored:
                    row.password_hash = rehashed
            expires_at = float(math.ceil(now() + self.token_ttl_s))
            issued = issue_token(session, user.id, member.workspace_id, name=LOGIN_TOKEN_NAME, expires_at=expires_at)
            await session.commit()
        return LoginResult(
            token=issued.secret, token_type="bearer", expires_at=utc(expires_at),
            user=LoginUser(id=user.id, name=user.name, role=member.role), workspace_id=member.workspace_id,
        )  # fmt: skip

    async def logout(self, principal: Principal) -> None:
        """Revoke the token that made the request (effective on the next request)."""
        async with self.sessions() as session:
            token = await session.get(ApiToken, principal.token_id)
            if token is None or token.revoked_at is not None:
                return
            token.revoked_at = token.updated_at = now()
            _audit(session, token, "revoked", principal, reason="logout")
            await session.commit()

    async def change_password(self, principal: Principal, *, current: str | None, new: str) -> None:
        """Set the caller's password. With one set, ``current`` must match (attempts count as logins);
        without one, only a token as strong as the user may set it, since a login then yields such a token."""
        async with self.sessions() as session:
            user = await session.get(User, principal.user_id)
            token = await session.get(ApiToken, principal.token_id)
            if user is None or token is None:
                raise NotAuthenticated()
            stored = user.password_hash
            roles = list(await session.scalars(select(Membership.role).where(Membership.user_id == user.id)))
        if stored is not None:
            if current is None:
                raise InvalidInput("current_password is required to change a password")
            self.limiter.attempt(username=user.name)
            if not await self.passwords.verify(stored, current):
                raise PermissionDenied("current_password is not the current password")
        elif token.kb_ids is not None or (
            token.role is not None and any(ROLE_RANK[token.role] < ROLE_RANK[r] for r in roles)
        ):
            raise PermissionDenied(
                "setting a first password needs a token without a role cap or knowledge-base limit below the user's"
            )
        new_hash = await self.passwords.hash(new)
        async with self.sessions() as session:
            row = await session.get(User, principal.user_id)
            if row is None:
                raise NotAuthenticated()
            if row.password_hash != stored:
                raise Conflict("the password was changed meanwhile; try again")
            row.password_hash = new_hash
            await self._commit(session)

    # -- user management (admins of the caller's workspace) -------------------------------------

    async def list_users(self, principal: Principal, *, page: int = 1, limit: int = 20) -> Paged:
        where = [Membership.workspace_id == principal.workspace_id]
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(Membership).where(*where)) or 0
            rows = await session.execute(
                select(User, Membership.role)
                .join(Membership, Membership.user_id == User.id)
                .where(*where)
                .order_by(Membership.created_at, User.id)
                .offset((page - 1) * limit)
                .limit(limit)
            )
            items = [_view(user, role) for user, role in rows]
        return Paged(items=items, total=total)

    async def get_user(self, principal: Principal, user_id: str) -> UserInfo:
        async with self.sessions() as session:
            user, member = await self._member(session, principal, user_id)
            return _view(user, member.role)

    async def create_user(self, principal: Principal, *, name: str, role: str, password: str | None) -> UserInfo:
        """A new user, member of the caller's workspace with ``role``."""
        _require_unlimited(principal)
        _check_role(role)
        password_hash = await self.passwords.hash(password) if password is not None else None
        async with self.sessions() as session:
            await _check_name_free(session, name)
            user = User(id=new_id("usr"), name=name, password_hash=password_hash, created_at=now())
            session.add(user)
            await self._commit(session, flush=True)
            session.add(Membership(workspace_id=principal.workspace_id, user_id=user.id, role=role, created_at=now()))
            await self._commit(session)
            return _view(user, role)

    async def update_user(
        self,
        principal: Principal,
        user_id: str,
        *,
        name: str | None = None,
        role: str | None = None,
        password: str | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> UserInfo:
        """Rename, change the role in this workspace, set or (``None``) remove the password."""
        _require_unlimited(principal)
        if role is not None:
            _check_role(role)
        async with self.sessions() as session:
            await self._member(session, principal, user_id)  # 404 before any hashing work
        new_hash = await self.passwords.hash(password) if isinstance(password, str) else None
        async with self.sessions() as session:
            user, member = await self._member(session, principal, user_id)
            if name is not None or password is not msgspec.UNSET:
                await _check_administers_all(session, principal, user_id)
            if name is not None and name != user.name:
                await _check_name_free(session, name)
                user.name = name
            if password is not msgspec.UNSET:
                user.password_hash = new_hash
            if role is not None and role != member.role:
                if member.role == "admin":
                    await _keep_an_admin(session, principal.workspace_id)
                member.role = role
            await self._commit(session)
            return _view(user, member.role)

    async def delete_user(self, principal: Principal, user_id: str) -> None:
        """Remove the user from this workspace (their tokens here are revoked), and delete them entirely
        when this was their only workspace."""
        _require_unlimited(principal)
        async with self.sessions() as session:
            _, member = await self._member(session, principal, user_id)
            if member.role == "admin":
                await _keep_an_admin(session, principal.workspace_id)
            elsewhere = await session.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.user_id == user_id, Membership.workspace_id != principal.workspace_id)
            )
            if elsewhere:  # a member elsewhere: only this workspace's tokens stop working
                tokens = await session.scalars(
                    select(ApiToken).where(
                        ApiToken.user_id == user_id,
                        ApiToken.workspace_id == principal.workspace_id,
                        ApiToken.revoked_at.is_(None),
                    )
                )
                for token in tokens:
                    token.revoked_at = token.updated_at = now()
                    _audit(session, token, "revoked", principal, reason="member removed")
                await session.delete(member)
            else:  # gone entirely: their tokens (all of this workspace) go with them
                for token in await session.scalars(select(ApiToken).where(ApiToken.user_id == user_id)):
                    _audit(session, token, "deleted", principal, reason="user deleted")
                await session.execute(delete(Membership).where(Membership.user_id == user_id))
                await session.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
                await session.execute(delete(User).where(User.id == user_id))
            await session.commit()

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    async def _member(session: AsyncSession, principal: Principal, user_id: str) -> tuple[User, Membership]:
        """The user and their membership in the caller's workspace; anyone else is missing (404)."""
        member = await session.get(Membership, (principal.workspace_id, user_id))
        user = await session.get(User, user_id) if member is not None else None
        if member is None or user is None:
            raise NotFound("user", user_id)
        return user, member

    @staticmethod
    async def _commit(session: AsyncSession, *, flush: bool = False) -> None:
        """Commit (or flush); a name taken meanwhile by another user with a password is a conflict."""
        try:
            await (session.flush() if flush else session.commit())
        except IntegrityError:
            await session.rollback()
            raise Conflict("a user with this name already exists") from None


def _audit(session: AsyncSession, token: ApiToken, action: str, actor: Principal, *, reason: str) -> None:
    session.add(
        TokenAudit(
            token_id=token.id, workspace_id=token.workspace_id, action=action, actor_token_id=actor.token_id,
            detail={"reason": reason},
        )
    )  # fmt: skip


def _require_unlimited(principal: Principal) -> None:
    # a user made here can log in and get an unlimited token: a knowledge-base-limited one may not do that
    if principal.kb_ids is not None:
        raise PermissionDenied("managing users needs a token that is not limited to knowledge bases")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")


async def _check_name_free(session: AsyncSession, name: str) -> None:
    if await session.scalar(select(User.id).where(User.name == name).limit(1)) is not None:
        raise Conflict("a user with this name already exists")


async def _check_administers_all(session: AsyncSession, principal: Principal, user_id: str) -> None:
    """A user's name and password count everywhere: only an admin of all their workspaces changes them."""
    theirs = set(await session.scalars(select(Membership.workspace_id).where(Membership.user_id == user_id)))
    mine = set(
        await session.scalars(
            select(Membership.workspace_id).where(Membership.user_id == principal.user_id, Membership.role == "admin")
        )
    )
    if theirs - mine:
        raise PermissionDenied(
            "this user is also a member of workspaces you do not administer: their name and password are not "
            "yours to change (they set their own password with PUT /api/v1/me/password)"
        )


async def _keep_an_admin(session: AsyncSession, workspace_id: str) -> None:
    admins = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.workspace_id == workspace_id, Membership.role == "admin")
    )
    if (admins or 0) <= 1:
        raise Conflict("a workspace keeps at least one admin")
