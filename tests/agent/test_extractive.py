"""The built-in extractive model end to end: native client -> tool loop -> cited answer (litellm never imported)."""

from __future__ import annotations

import pytest

from engine.agent.knowledge_tool import KnowledgeSearchTool
from engine.agent.spec import AgentSpec
from engine.agent.textmatch import keywords
from engine.db.run_store import SqlRunStore
from engine.events import CitationEvent, DoneEvent, ToolStartEvent
from engine.models.extractive import NOTHING_FOUND, PREFACE, ExtractiveModelClient
from engine.runs import RunManager
from engine.types import ScoredChunk
from tests.agent.helpers import ask, chunk, collect, compact

pytestmark = pytest.mark.anyio

CORPUS = [
    (
        "photosynthesis.md",
        "Photosynthesis converts light energy into chemical energy. It takes place in the "
        "chloroplasts of plant cells. Oxygen is released as a by-product.",
    ),
    (
        "volcanoes.md",
        "A volcano is an opening in the crust of a planet. Magma rises from the mantle and erupts "
        "as lava. Mount Etna is one of the most active volcanoes in Europe.",
    ),
    (
        "tides.md",
        "Tides are caused by the gravitational pull of the moon and the sun. Most coasts see two high tides each day.",
    ),
]


class KeywordSearcher:
    """Ranks a few real texts by keyword overlap with the query, inside one workspace and its KBs."""

    def __init__(self) -> None:
        self.chunks = [chunk(text, n=i, file_name=name) for i, (name, text) in enumerate(CORPUS)]
        self.chunks.append(chunk("Tides on Mars do not exist.", n=9, file_name="other.md", workspace_id="ws_b"))

    async def search(self, query: str, *, workspace_id: str, kb_ids: tuple[str, ...], top_k: int) -> list[ScoredChunk]:
        words = keywords(query)
        scored = [
            (len(words & keywords(c.chunk.text)), c)
            for c in self.chunks
            if c.chunk.workspace_id == workspace_id and c.chunk.kb_id in kb_ids
        ]
        return [c for score, c in sorted(scored, key=lambda s: -s[0]) if score > 0][:top_k]


async def run_question(manager: RunManager, question: str, kb_ids: tuple[str, ...] = ("kb_1",)) -> list:  # type: ignore[type-arg]
    spec = AgentSpec(name="assistant", model="ragline/extractive", kb_ids=kb_ids)
    tool = KnowledgeSearchTool(KeywordSearcher())
    run_id = await manager.start(ask(spec, question, "ws_a"), model=ExtractiveModelClient(), tools=[tool])
    return await collect(manager, run_id)


async def test_extractive_answer_with_citations(manager: RunManager, store: SqlRunStore) -> None:
    events = await run_question(manager, "Where does photosynthesis take place in plant cells?")
    assert compact(events) == ["execution", "thinking*", "tool_start", "tool_end", "content*", "citation", "done"]
    start = events[2]
    assert isinstance(start, ToolStartEvent) and start.arguments == {
        "query": "Where does photosynthesis take place in plant cells?"
    }
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.output.startswith(PREFACE)
    assert '"It takes place in the chloroplasts of plant cells." [1]' in done.output
    citation = next(e for e in events if isinstance(e, CitationEvent))
    assert (citation.index, citation.file_name, citation.quote) == (
        1, "photosynthesis.md", "It takes place in the chloroplasts of plant cells.",
    )  # fmt: skip
    assert done.token_usage.total > 0
    record = await store.get_run(events[0].run_id)
    assert record is not None and record.status == "succeeded" and len(record.steps) == 3


async def test_extractive_answer_cites_several_sources(manager: RunManager) -> None:
    events = await run_question(manager, "What causes tides, and which volcano in Europe is active?")
    citations = [e for e in events if isinstance(e, CitationEvent)]
    assert {c.file_name for c in citations} == {"tides.md", "volcanoes.md"}
    assert all(c.quote in dict(CORPUS)[c.file_name] for c in citations)
    assert "Mars" not in events[-1].output  # another workspace's chunk never reaches the answer


async def test_extractive_says_when_nothing_matches(manager: RunManager) -> None:
    events = await run_question(manager, "Quantum chromodynamics lattice?")
    assert compact(events) == ["execution", "thinking*", "tool_start", "tool_end", "content*", "done"]
    assert events[-1].output == NOTHING_FOUND
