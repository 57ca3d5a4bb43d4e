"""Ragline as an MCP server: ``search``, ``list_files`` and ``ask`` for any MCP client, at ``/mcp``.

Streamable HTTP (the ``mcp`` SDK's ``MCPServer`` and ``StreamableHTTPSessionManager``) mounted in the Litestar app
(``@asgi(path="/mcp", is_mount=True)`` in ``api.mcp_endpoint``, which imports this module on the first request).
Every HTTP request to it passes the app's own guard first, like any route: a Ragline token (``Authorization:
Bearer rl_…``, ``X-API-Key`` or ``X-API-Token``) of any member, the workspace from the token (``X-Workspace-ID``
selects another of the caller's), the per-token rate limit; no token: 401 with the error envelope. The resolved
``Principal`` travels in the ASGI scope to the tools, which see exactly what the REST API would show that token:
its workspace, and only the knowledge bases a limited token may read.

The transport is stateless (every POST is a whole exchange, answered as JSON): no MCP session outlives a request,
so none can be picked up with another token, and nothing is kept between requests. The session manager's task
group starts with the first request and stops with the app (``api.mcp_endpoint.McpEndpoint``).

``ask`` is a run like any other: ``RunService.start`` with kind ``chat`` (the built-in assistant), recorded and
listed at ``/executions``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent
from pydantic import Field

from api.container import Services
from api.services.identity import Principal
from api.services.runs import RunStart
from engine.errors import EngineError
from engine.events import CitationEvent, DoneEvent, ErrorEvent
from engine.retrieval import SearchRequest
from engine.types import SearchFilters
from ingest.views import KnowledgeBaseInfo

log = logging.getLogger("ragline")
for _name in ("mcp", "httpx2", "httpcore2"):  # at INFO the SDK logs every request and session
    logging.getLogger(_name).setLevel(max(logging.getLogger(_name).level, logging.WARNING))

PRINCIPAL_KEY = "principal"  # where the guard leaves the caller in scope["state"]
MAX_KBS = 1000
MAX_FILES_PER_KB = 200
INSTRUCTIONS = (
    "Ragline's knowledge bases. Use `search` to find passages (each with its file, page and chunk id to cite), "
    "`list_files` to see the knowledge bases and their files, and `ask` for an answer written by Ragline's "
    "assistant from the knowledge bases, with numbered citations."
)

Query = Annotated[str, Field(min_length=1, max_length=10_000, description="What to look for, in plain words.")]
TopK = Annotated[int, Field(ge=1, le=50, description="How many passages to return.")]
Mode = Annotated[
    Literal["hybrid", "dense", "sparse"],
    Field(description="hybrid (default): meaning and keywords; dense: meaning only; sparse: keywords (BM25) only."),
]
KbFilter = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200)]] | None,
    Field(max_length=100, description="Knowledge bases to search, by id or name (default: every one you may read)."),
]
Question = Annotated[str, Field(min_length=1, max_length=10_000, description="The question, in plain words.")]


def _principal(ctx: Context) -> Principal:
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state") or {}
    principal = state.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):  # never: the guard admits no request without one
        raise ToolError("not authenticated")
    return principal


async def readable_kbs(services: Services, principal: Principal) -> list[KnowledgeBaseInfo]:
    """The knowledge bases the caller may read (a limited token: only its own)."""
    page = await services.knowledge.list_kbs(principal.workspace_id, limit=MAX_KBS, only=principal.kb_ids)
    return page.items


async def resolve_kbs(services: Services, principal: Principal, wanted: Sequence[str] | None) -> tuple[str, ...] | None:
    """Ids for ``wanted`` (ids or names) among the readable bases; ``None`` when nothing was asked."""
    if wanted is None:
        return None
    kbs = await readable_kbs(services, principal)
    by_key = {kb.id: kb.id for kb in kbs} | {kb.name: kb.id for kb in kbs}
    unknown = [w for w in wanted if w not in by_key]
    if unknown:
        names = ", ".join(sorted(kb.name for kb in kbs)) or "none"
        raise ToolError(f"unknown knowledge base {unknown[0]!r}; you may read: {names}")
    return tuple(dict.fromkeys(by_key[w] for w in wanted))


def _cite(file_name: str, page: int | None) -> str:
    return f"{file_name}, page {page}" if page is not None else file_name


def _result(text: str, structured: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


async def search_passages(
    services: Services, principal: Principal, query: str, top_k: int, mode: Any, knowledge_bases: Sequence[str] | None
) -> CallToolResult:
    kb_ids = await resolve_kbs(services, principal, knowledge_bases)
    filters = SearchFilters(workspace_id=principal.workspace_id, kb_ids=principal.narrow_kbs(kb_ids))
    try:
        hits = await services.retriever.retrieve(SearchRequest(query=query, filters=filters, top_k=top_k, mode=mode))
    except EngineError as exc:
        raise ToolError(exc.message) from None
    names = {kb.id: kb.name for kb in await readable_kbs(services, principal)}
    passages: list[dict[str, Any]] = []
    lines: list[str] = []
    for rank, hit in enumerate(hits, 1):
        chunk = hit.chunk
        passages.append({
            "rank": rank, "text": chunk.text, "score": round(hit.score, 6), "file": chunk.file_name,
            "file_id": chunk.file_id, "page": chunk.page, "chunk_id": chunk.id,
            "knowledge_base": names.get(chunk.kb_id, chunk.kb_id), "kb_id": chunk.kb_id,
            "heading_path": list(chunk.heading_path),
        })  # fmt: skip
        lines.append(f"[{rank}] {_cite(chunk.file_name, chunk.page)} (chunk {chunk.id}):\n{chunk.text}")
    return _result("\n\n".join(lines) or "No passages found.", {"passages": passages})


async def list_kb_files(
    services: Services, principal: Principal, knowledge_bases: Sequence[str] | None
) -> CallToolResult:
    wanted = await resolve_kbs(services, principal, knowledge_bases)
    out: list[dict[str, Any]] = []
    lines: list[str] = []
    for kb in await readable_kbs(services, principal):
        if wanted is not None and kb.id not in wanted:
            continue
        files = await services.knowledge.list_files(principal.workspace_id, kb.id, limit=MAX_FILES_PER_KB)
        out.append({
            "id": kb.id, "name": kb.name, "description": kb.description, "file_count": files.total,
            "files": [{"id": f.id, "name": f.name, "status": f.status, "file_type": f.file_type,
                       "pages": f.pages_total, "chunks": f.chunks_total, "error": f.error} for f in files.items],
            "truncated": files.total > len(files.items),
        })  # fmt: skip
        lines.append(f"{kb.name} ({kb.id}): {files.total} file(s)")
        lines += [f"  - {f.name} ({f.id}): {f.status}" + (f", {f.error}" if f.error else "") for f in files.items]
    return _result("\n".join(lines) or "No knowledge bases.", {"knowledge_bases": out})


async def ask_assistant(
    services: Services, principal: Principal, question: str, knowledge_bases: Sequence[str] | None
) -> CallToolResult:
    kb_ids = await resolve_kbs(services, principal, knowledge_bases)
    try:
        run_id = await services.runs.start(principal, RunStart(user_input=question, kind="chat", kb_ids=kb_ids))
    except EngineError as exc:
        raise ToolError(exc.message) from None
    citations: list[dict[str, Any]] = []
    async for event in services.run_manager.subscribe(run_id, 0, workspace_id=principal.workspace_id):
        if isinstance(event, CitationEvent):
            citations.append({"index": event.index, "file": event.file_name, "file_id": event.file_id,
                              "page": event.page, "chunk_id": event.chunk_id, "quote": event.quote})  # fmt: skip
        elif isinstance(event, ErrorEvent):
            raise ToolError(f"the run failed ({event.code}): {event.message} (run {run_id})")
        elif isinstance(event, DoneEvent):
            sources = "\n".join(f"[{c['index']}] {_cite(c['file'], c['page'])}" for c in citations)
            text = event.output + (f"\n\nSources:\n{sources}" if sources else "")
            return _result(text, {"answer": event.output, "citations": citations, "run_id": run_id})
    raise ToolError(f"the run ended without an answer (run {run_id})")


def build_server(services: Services) -> MCPServer:
    """The MCP server and its three tools, over ``services``."""
    server: MCPServer = MCPServer("ragline", instructions=INSTRUCTIONS, version="1.0.0")

    @server.tool(name="search", title="Search the knowledge bases")
    async def search(
        query: Query, ctx: Context, top_k: TopK = 5, mode: Mode = "hybrid", knowledge_bases: KbFilter = None
    ) -> CallToolResult:
        """Search Ragline's knowledge bases; every passage comes with its file, page and chunk id to cite."""
        return await search_passages(services, _principal(ctx), query, top_k, mode, knowledge_bases)

    @server.tool(name="list_files", title="List knowledge bases and files")
    async def list_files(ctx: Context, knowledge_bases: KbFilter = None) -> CallToolResult:
        """The knowledge bases you may read and their files, each with its ingest status."""
        return await list_kb_files(services, _principal(ctx), knowledge_bases)

    @server.tool(name="ask", title="Ask the knowledge assistant")
    async def ask(question: Question, ctx: Context, knowledge_bases: KbFilter = None) -> CallToolResult:
        """Ask Ragline's assistant: it searches the knowledge bases and answers with numbered citations [n].

        The answer is a recorded run (its run_id is listed at /api/v1/executions).
        """
        return await ask_assistant(services, _principal(ctx), question, knowledge_bases)

    return server


def session_manager(services: Services) -> StreamableHTTPSessionManager:
    """A new session manager for the server over ``services`` (``api.mcp_endpoint`` runs it)."""
    server = build_server(services)
    # no DNS-rebinding host check: a browser page cannot send a Ragline token, every request needs one
    server.streamable_http_app(
        stateless_http=True, json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )  # fmt: skip
    return server.session_manager
