"""Which tools a run gets: only those its agent names, and ``http_fetch`` only when enabled."""

from __future__ import annotations

from collections.abc import Sequence

from engine.agent.http_fetch import HttpFetchTool
from engine.agent.knowledge_tool import KnowledgeSearcher, KnowledgeSearchTool
from engine.agent.spec import HTTP_FETCH, KNOWLEDGE_SEARCH, AgentSpec
from engine.ports import Tool


def build_tools(
    spec: AgentSpec,
    *,
    searcher: KnowledgeSearcher | None = None,
    http_fetch_enabled: bool = False,
    http_fetch: HttpFetchTool | None = None,
    extra: Sequence[Tool] = (),
) -> list[Tool]:
    """The tools named in ``spec.tools`` that are available (unknown names are skipped).

    Args:
        spec: The agent.
        searcher: Retrieval service for ``knowledge_search``.
        http_fetch_enabled: The agent's per-agent switch; ``http_fetch`` is never on by default.
        http_fetch: A configured fetch tool (default limits when ``None``).
        extra: Further tools (e.g. ``function_tool``s) offered when their name is in ``spec.tools``.
    """
    tools: list[Tool] = []
    for name in dict.fromkeys(spec.tools):
        if name == KNOWLEDGE_SEARCH and searcher is not None:
            tools.append(KnowledgeSearchTool(searcher))
        elif name == HTTP_FETCH and http_fetch_enabled:
            tools.append(http_fetch or HttpFetchTool())
        else:
            tools.extend(t for t in extra if t.name == name)
    return tools
