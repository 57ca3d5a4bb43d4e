"""``knowledge_search``: the agent's window on the knowledge bases, scoped by the run, not the model."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from engine.agent.passages import render_passages
from engine.agent.spec import KNOWLEDGE_SEARCH
from engine.ports import ToolContext, ToolResult
from engine.types import ScoredChunk


class KnowledgeSearcher(Protocol):
    """What the retrieval service offers the agent (hybrid search inside one workspace)."""

    async def search(
        self, query: str, *, workspace_id: str, kb_ids: tuple[str, ...], top_k: int
    ) -> list[ScoredChunk]: ...


class _Args(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # No workspace or knowledge-base argument: the scope comes from ToolContext only.
    query: str
    top_k: int | None = None


class KnowledgeSearchTool:
    """Searches ``ctx.kb_ids`` inside ``ctx.workspace_id`` and returns numbered passages.

    Args:
        searcher: The retrieval service.
        default_top_k: Passages returned when the model does not ask for a number.
        max_top_k: Upper bound on what the model may ask for.
    """

    name = KNOWLEDGE_SEARCH
    description = (
        "Search the attached knowledge bases. Returns numbered passages; cite the ones you use "
        "with their [n] marker right after the claim."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for, in natural language."},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 20, "description": "How many passages."},
        },
        "required": ["query"],
        "additionalProperties": False,
    }

    def __init__(self, searcher: KnowledgeSearcher, *, default_top_k: int = 5, max_top_k: int = 10) -> None:
        self._searcher = searcher
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            parsed = msgspec.convert(args, _Args)
        except msgspec.ValidationError as exc:
            return ToolResult(
                content=f'Invalid arguments: {exc}. Send {{"query": "..."}}.',
                summary="invalid arguments",
                is_error=True,
            )
        query = parsed.query.strip()
        if not query:
            return ToolResult(content="The query is empty.", summary="empty query", is_error=True)
        if not ctx.kb_ids:
            return ToolResult(
                content="No knowledge base is attached to this conversation.", summary="no knowledge base"
            )
        top_k = max(1, min(parsed.top_k or self._default_top_k, self._max_top_k))
        hits = await self._searcher.search(query, workspace_id=ctx.workspace_id, kb_ids=ctx.kb_ids, top_k=top_k)
        # Defence in depth: whatever the searcher returns, nothing outside the run's scope gets through.
        hits = [h for h in hits if h.chunk.workspace_id == ctx.workspace_id and h.chunk.kb_id in ctx.kb_ids][:top_k]
        files = sorted({h.chunk.file_name for h in hits})
        summary = f"{len(hits)} passage{'s' if len(hits) != 1 else ''}" + (
            f" from {', '.join(files[:3])}" if files else ""
        )
        return ToolResult(content=render_passages(hits, range(1, len(hits) + 1)), summary=summary, sources=tuple(hits))
