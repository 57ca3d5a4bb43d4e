"""MCP servers a workspace's agents may use: URL, write-only credentials, allowed tools, a per-call timeout.

The URL goes through the SSRF guard when saved (``RAGLINE_MCP_ALLOW_NETWORKS`` exempts an operator's networks) and
again on every request a run makes (``engine.agent.mcp_tools``). The token (sent as ``Authorization: Bearer``)
and further headers are sealed at rest (``engine.secrets``, bound to the row and field), shown only as
``has_token`` and ``header_names``, and opened only for a run. Only the tools named in ``allowed_tools`` are ever
offered to a model. Admins write; every member reads (agents name servers by id).
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Sequence
from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.agent.mcp_tools import McpServerConfig, headers_for
from engine.db.models import McpServer, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, InvalidInput
from engine.ids import utc
from engine.net import IPNetwork, resolve_url_async
from engine.secrets import SecretBox, SecretKeyError
from ingest.views import Page

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
# set by the transport itself (or meaningless to forward): never taken from a configuration
RESERVED_HEADERS = frozenset({
    "host", "content-length", "content-type", "accept", "connection", "transfer-encoding", "upgrade", "te",
    "trailer", "keep-alive", "proxy-authorization", "mcp-session-id", "mcp-protocol-version", "last-event-id",
})  # fmt: skip
MAX_HEADERS = 20
DEFAULT_TIMEOUT_S = 30.0


class McpServerInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    description: str
    url: str
    has_token: bool  # the token itself is never shown
    header_names: list[str]  # names of the further headers sent (their values are never shown)
    allowed_tools: list[str]
    timeout_s: float
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: McpServer) -> McpServerInfo:
        return cls(
            id=row.id, name=row.name, description=row.description, url=row.url, has_token=row.token_sealed is not None,
            header_names=list(row.header_names or []), allowed_tools=list(row.allowed_tools or []),
            timeout_s=row.timeout_s, created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        )  # fmt: skip


class McpServerFields(msgspec.Struct, kw_only=True):
    """Editable fields; ``None`` keeps a field. ``token`` ``""`` removes it; ``headers`` replaces every header
    (``{}`` removes them)."""

    name: str | None = None
    description: str | None = None
    url: str | None = None
    token: str | None = None
    headers: dict[str, str] | None = None
    allowed_tools: list[str] | None = None
    timeout_s: float | None = None


def _context(row: McpServer, field: str) -> str:
    return f"mcp:{row.id}:{field}"


def _check_headers(headers: dict[str, str]) -> None:
    if len(headers) > MAX_HEADERS:
        raise InvalidInput(f"at most {MAX_HEADERS} headers")
    seen: set[str] = set()
    for name, value in headers.items():
        if not HEADER_NAME.fullmatch(name):
            raise InvalidInput(f"{name!r} is not a valid HTTP header name")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidInput(f"the {name} header is set by Ragline itself")
        if name.lower() in seen:
            raise InvalidInput(f"the {name} header is given twice")
        seen.add(name.lower())
        if any(c in value for c in "\r\n\x00"):
            raise InvalidInput(f"the value of the {name} header holds a line break or NUL")


class McpServerService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, *, allowed: tuple[IPNetwork, ...] = ()
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.allowed = allowed  # networks a server URL may point into despite the SSRF guard (operator's)

    async def create(self, principal: Principal, fields: McpServerFields) -> McpServerInfo:
        if not fields.name or not fields.url:
            raise InvalidInput("an MCP server needs a name and a url")
        row = McpServer(
            id=new_id("mcp"), workspace_id=principal.workspace_id, name=fields.name, description="", url="",
            header_names=[], allowed_tools=[], timeout_s=DEFAULT_TIMEOUT_S, created_at=now(), updated_at=now(),
        )  # fmt: skip
        await self._apply(row, fields)
        async with self.sessions() as session:
            session.add(row)
            await self._commit(session, row)
        return McpServerInfo.of(row)

    async def list(self, principal: Principal, *, page: int, limit: int) -> Page[McpServerInfo]:
        where = [McpServer.workspace_id == principal.workspace_id]
        async with self.sessions() as session:
            total, rows = await fetch_page(session, McpServer, where, [McpServer.name, McpServer.id], page=page,
                                           limit=limit)  # fmt: skip
        return Page(items=[McpServerInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def get(self, principal: Principal, server_id: str) -> McpServerInfo:
        async with self.sessions() as session:
            return McpServerInfo.of(await self._row(session, principal.workspace_id, server_id))

    async def update(self, principal: Principal, server_id: str, fields: McpServerFields) -> McpServerInfo:
        async with self.sessions() as session:
            row = await self._row(session, principal.workspace_id, server_id)
            await self._apply(row, fields)
            row.updated_at = now()
            await self._commit(session, row)
            return McpServerInfo.of(row)

    async def delete(self, principal: Principal, server_id: str) -> None:
        """Agents that name the server keep its id; their runs skip it (and say so)."""
        async with self.sessions() as session:
            await session.delete(await self._row(session, principal.workspace_id, server_id))
            await session.commit()

    # -- what agents and runs use --------------------------------------------------------------------------------

    async def check_ids(self, workspace_id: str, server_ids: Sequence[str]) -> None:
        """Raise ``InvalidInput`` unless every id names an MCP server of the workspace."""
        if not server_ids:
            return
        async with self.sessions() as session:
            found = set(await session.scalars(select(McpServer.id).where(
                McpServer.workspace_id == workspace_id, McpServer.id.in_(list(server_ids)))))  # fmt: skip
        missing = [s for s in server_ids if s not in found]
        if missing:
            raise InvalidInput(f"unknown MCP server: {missing[0]}")

    async def for_run(
        self, workspace_id: str, server_ids: Sequence[str]
    ) -> tuple[builtins.list[McpServerConfig], builtins.list[str]]:
        """The servers as a run uses them (credentials opened), and a note for each one it cannot use."""
        ids = list(dict.fromkeys(server_ids))
        if not ids:
            return [], []
        async with self.sessions() as session:
            rows = {r.id: r for r in await session.scalars(select(McpServer).where(
                McpServer.workspace_id == workspace_id, McpServer.id.in_(ids)))}  # fmt: skip
        configs: builtins.list[McpServerConfig] = []
        notes: builtins.list[str] = []
        for server_id in ids:
            row = rows.get(server_id)
            if row is None:
                notes.append(f"MCP server {server_id} no longer exists: its tools are not offered in this run.")
                continue
            try:
                token = self.box.open(row.token_sealed, context=_context(row, "token")) if row.token_sealed else None
                extra = json.loads(self.box.open(row.headers_sealed, context=_context(row, "headers"))) \
                    if row.headers_sealed else {}  # fmt: skip
            except SecretKeyError:
                notes.append(f"MCP server {row.name!r}: its credentials cannot be opened (set them again): its tools "
                             "are not offered in this run.")  # fmt: skip
                continue
            configs.append(McpServerConfig(
                id=row.id, name=row.name, url=row.url, headers=headers_for(token, extra),
                allowed_tools=tuple(row.allowed_tools or ()), timeout_s=row.timeout_s,
            ))  # fmt: skip
        return configs, notes

    async def reseal_all(self) -> int:
        """Seal every credential with the current key (after a key rotation); returns how many changed."""
        changed = 0
        async with self.sessions() as session:
            for row in await session.scalars(select(McpServer)):
                for field in ("token", "headers"):
                    sealed = getattr(row, f"{field}_sealed")
                    if sealed is not None and not self.box.is_current(sealed):
                        setattr(row, f"{field}_sealed", self.box.reseal(sealed, context=_context(row, field)))
                        changed += 1
            await session.commit()
        return changed

    # -- internals ------------------------------------------------------------------------------------------

    async def _row(self, session: AsyncSession, workspace_id: str, server_id: str) -> McpServer:
        return await get_in_workspace(session, McpServer, server_id, workspace_id, "MCP server")

    async def _apply(self, row: McpServer, fields: McpServerFields) -> None:
        if fields.name is not None:
            if not NAME.fullmatch(fields.name) or "__" in fields.name:
                raise InvalidInput("an MCP server name is a letter, then up to 31 letters, digits, _ or - (no '__'): "
                                   "its tools are offered as <name>__<tool>")  # fmt: skip
            row.name = fields.name
        if fields.description is not None:
            row.description = fields.description
        if fields.url is not None:
            await resolve_url_async(fields.url, allowed=self.allowed)  # the SSRF guard (422 blocked_destination)
            row.url = fields.url
        if fields.token is not None:
            row.token_sealed = self.box.seal(fields.token, context=_context(row, "token")) if fields.token else None
        if fields.headers is not None:
            _check_headers(fields.headers)
            row.headers_sealed = self.box.seal(json.dumps(fields.headers), context=_context(row, "headers")) \
                if fields.headers else None  # fmt: skip
            row.header_names = sorted(fields.headers)
        if fields.allowed_tools is not None:
            row.allowed_tools = list(dict.fromkeys(fields.allowed_tools))
        if fields.timeout_s is not None:
            row.timeout_s = float(fields.timeout_s)

    @staticmethod
    async def _commit(session: AsyncSession, row: McpServer) -> None:
        try:
            await session.commit()
        except IntegrityError:
            raise Conflict(f"an MCP server named {row.name!r} already exists") from None
