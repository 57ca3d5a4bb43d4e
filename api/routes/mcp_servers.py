"""MCP servers whose tools agents may use (``/mcp-servers``): admins write, members read; credentials write-only."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from msgspec import Meta

from api.auth import ADMIN, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo
from api.schemas import Body
from api.services.identity import Principal
from api.services.mcp_servers import McpServerFields, McpServerInfo

# a letter, then letters, digits, _ or -: its tools are offered as <name>__<tool>
ServerName = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9_-]*\Z")]
Description = Annotated[str, Meta(max_length=2000)]
Url = Annotated[str, Meta(min_length=8, max_length=2000, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://")]
Secret = Annotated[str, Meta(max_length=8192)]  # write-only; "" removes it
Headers = Annotated[dict[Annotated[str, Meta(min_length=1, max_length=64)], Secret], Meta(max_length=20)]
ToolName = Annotated[str, Meta(min_length=1, max_length=128)]
AllowedTools = Annotated[list[ToolName], Meta(max_length=200)]
Timeout = Annotated[float, Meta(gt=0, le=600)]


class McpServerCreate(Body):
    name: ServerName
    url: Url  # streamable HTTP endpoint, e.g. https://tools.example.com/mcp (checked by the SSRF guard)
    description: Description = ""
    token: Secret | None = None  # sent as "Authorization: Bearer <token>"; write-only
    headers: Headers | None = None  # further headers (e.g. X-API-Key); write-only, their names are shown
    allowed_tools: AllowedTools = []  # the server's tools that may be offered to models (by their own names)
    timeout_s: Timeout = 30.0  # per tool call


class McpServerUpdate(Body):
    name: ServerName | None = None
    url: Url | None = None
    description: Description | None = None
    token: Secret | None = None  # "": removed
    headers: Headers | None = None  # replaces every header; {}: none
    allowed_tools: AllowedTools | None = None
    timeout_s: Timeout | None = None


def _fields(data: msgspec.Struct) -> McpServerFields:
    return msgspec.convert(msgspec.structs.asdict(data), McpServerFields)


class McpServerController(Controller):
    path = "/api/v1/mcp-servers"
    tags = ["mcp"]

    @get("/", opt=VIEWER, summary="The workspace's MCP servers (has_token and header_names, never their values)")
    async def list_mcp_servers(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[McpServerInfo]:
        result = await services.mcp_servers.list(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=ADMIN, status_code=201, summary="Add an MCP server (streamable HTTP) agents may use")
    async def create_mcp_server(
        self, data: McpServerCreate, services: Services, principal: Principal
    ) -> Envelope[McpServerInfo]:
        return ok(await services.mcp_servers.create(principal, _fields(data)), "MCP server created successfully")

    @get("/{mcp_server_id:str}", opt=VIEWER, summary="Get an MCP server")
    async def get_mcp_server(
        self, mcp_server_id: str, services: Services, principal: Principal
    ) -> Envelope[McpServerInfo]:
        return ok(await services.mcp_servers.get(principal, mcp_server_id))

    @patch("/{mcp_server_id:str}", opt=ADMIN, summary="Update an MCP server (token '' removes it)")
    async def update_mcp_server(
        self, mcp_server_id: str, data: McpServerUpdate, services: Services, principal: Principal
    ) -> Envelope[McpServerInfo]:
        return ok(await services.mcp_servers.update(principal, mcp_server_id, _fields(data)), "MCP server updated")

    @delete("/{mcp_server_id:str}", opt=ADMIN, status_code=200, summary="Delete an MCP server")
    async def delete_mcp_server(self, mcp_server_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.mcp_servers.delete(principal, mcp_server_id)
        return ok(None, "MCP server deleted")
