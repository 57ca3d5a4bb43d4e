"""API tokens: issue, list, inspect, re-scope, revoke, renew, regenerate, delete, audit, validate.

Every member (viewers included) may mint and manage tokens for themselves; admins also mint for other
members and manage every token of the workspace. A token is never stronger than the caller's (role and
knowledge-base scope: 403 / 422 otherwise), and tokens the caller may not manage are reported as missing
(404). Secrets are shown once: in the create and regenerate answers. Minting (create and regenerate
together) has a strict budget per acting user, ``RAGLINE_TOKEN_MINT_PER_MINUTE`` (10) and
``RAGLINE_TOKEN_MINT_PER_DAY`` (100); beyond it 429 with ``Retry-After``.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.openapi.spec import Example
from litestar.params import Body as BodyParam
from msgspec import Meta

from api.auth import ADMIN, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.knowledge import Limit, PageNo
from api.schemas import Body, Id, Name
from api.services.identity import AuditEntry, IssuedTokenInfo, Principal, PrincipalInfo, TokenInfo
from engine.errors import InvalidInput

Role = Literal["viewer", "editor", "admin"]
KbIds = Annotated[list[Id], Meta(min_length=1, max_length=100)]
Days = Annotated[int, Meta(ge=1, le=3650)]
Timestamp = Annotated[float, Meta(ge=0, le=1e11)]


class TokenCreate(Body):
    name: Name
    role: Role | None = None  # cap; at most the caller's role (default: the caller's role)
    kb_ids: KbIds | None = None  # limit to these knowledge bases of the workspace
    expires_at: Timestamp | None = None  # unix seconds
    expires_in_days: Days | None = None
    user_id: Id | None = None  # admins: issue for another member of the workspace


class TokenUpdate(Body):
    name: Name | None = None
    role: Role | msgspec.UnsetType | None = msgspec.UNSET  # null: the caller's role
    kb_ids: KbIds | msgspec.UnsetType | None = msgspec.UNSET  # null: every knowledge base (the caller's scope)


class TokenRenew(Body):
    expires_at: Timestamp | None = None
    expires_in_days: Days | None = None
    never: bool = False  # no expiry at all


def expiry_of(expires_at: float | None, expires_in_days: int | None) -> float | None:
    if expires_at is not None and expires_in_days is not None:
        raise InvalidInput("give expires_at or expires_in_days, not both")
    return time.time() + expires_in_days * 86400.0 if expires_in_days is not None else expires_at


CREATE_EXAMPLE = Example(
    summary="A read-only token for one knowledge base, valid 30 days",
    value={"name": "support bot", "role": "viewer", "kb_ids": ["kb_0123456789abcdef01234567"], "expires_in_days": 30},
)


class TokenController(Controller):
    path = "/api/v1/tokens"
    tags = ["tokens"]

    @post("/", opt=VIEWER, status_code=201,
          summary="Create a token for yourself (admins: for any member); the secret is shown once, here")
    async def create(
        self,
        data: Annotated[TokenCreate, BodyParam(examples=[CREATE_EXAMPLE])],
        services: Services,
        principal: Principal,
    ) -> Envelope[IssuedTokenInfo]:
        issued = await services.access.create_token(
            principal,
            name=data.name,
            role=data.role,
            kb_ids=data.kb_ids,
            user_id=data.user_id,
            expires_at=expiry_of(data.expires_at, data.expires_in_days),
        )
        return ok(issued, "Token created; store the secret now, it is not shown again")

    @get("/", opt=VIEWER, summary="List the tokens you may manage (admins: the workspace's)")
    async def list_tokens(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[TokenInfo]:
        result = await services.access.list_tokens(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/validate", opt=VIEWER, summary="Validate the presented token and describe the caller")
    async def validate(self, services: Services, principal: Principal) -> Envelope[PrincipalInfo]:
        return ok(await services.access.describe(principal), "Token is valid")

    @get("/audit", opt=ADMIN, summary="Token audit log of the workspace (admins)")
    async def workspace_audit(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[AuditEntry]:
        result = await services.access.workspace_audit(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{token_id:str}", opt=VIEWER, summary="Get a token")
    async def get_token(self, token_id: str, services: Services, principal: Principal) -> Envelope[TokenInfo]:
        return ok(await services.access.get_token(principal, token_id))

    @patch("/{token_id:str}", opt=VIEWER, summary="Rename a token, change its role cap or knowledge bases")
    async def update(
        self, token_id: str, data: TokenUpdate, services: Services, principal: Principal
    ) -> Envelope[TokenInfo]:
        token = await services.access.update_token(
            principal, token_id, name=data.name, role=data.role, kb_ids=data.kb_ids
        )
        return ok(token, "Token updated")

    @post("/{token_id:str}/revoke", opt=VIEWER, status_code=200, summary="Revoke a token (effective at once)")
    async def revoke(self, token_id: str, services: Services, principal: Principal) -> Envelope[TokenInfo]:
        return ok(await services.access.revoke_token(principal, token_id), "Token revoked")

    @post("/{token_id:str}/renew", opt=VIEWER, status_code=200, summary="Set a new expiry; the secret stays")
    async def renew(
        self, token_id: str, data: TokenRenew, services: Services, principal: Principal
    ) -> Envelope[TokenInfo]:
        expires_at = expiry_of(data.expires_at, data.expires_in_days)
        if (expires_at is None) != data.never:
            raise InvalidInput("give expires_at, expires_in_days or never=true")
        return ok(await services.access.renew_token(principal, token_id, expires_at=expires_at), "Token renewed")

    @post(
        "/{token_id:str}/regenerate", opt=VIEWER, status_code=200, summary="New secret (shown once); the old one dies"
    )
    async def regenerate(self, token_id: str, services: Services, principal: Principal) -> Envelope[IssuedTokenInfo]:
        issued = await services.access.regenerate_token(principal, token_id)
        return ok(issued, "Token regenerated; store the new secret now, it is not shown again")

    @delete("/{token_id:str}", opt=VIEWER, status_code=200, summary="Delete a token")
    async def remove(self, token_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.access.delete_token(principal, token_id)
        return ok(None, "Token deleted")

    @get("/{token_id:str}/audit", opt=VIEWER, summary="Audit log of one token")
    async def audit(
        self, token_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[AuditEntry]:
        result = await services.access.token_audit(principal, token_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)
