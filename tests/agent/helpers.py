"""Small helpers shared by the agent tests."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.agent.spec import AgentSpec
from engine.events import RunEvent, event_type
from engine.runs import RunManager, RunRequest
from engine.types import ChunkRecord, ScoredChunk

API_KEY = "sk-test-0123456789abcdefSECRET"


def ask(spec: AgentSpec, user_input: str, workspace_id: str = "ws") -> RunRequest:
    """A run request of ``spec`` for one question in one workspace."""
    return RunRequest(spec=spec, user_input=user_input, workspace_id=workspace_id)


def kinds(events: list[RunEvent]) -> list[str]:
    return [event_type(e) for e in events]


def compact(events: list[RunEvent]) -> list[str]:
    """Event types with consecutive content/thinking deltas collapsed (``content*``)."""
    out: list[str] = []
    for kind in kinds(events):
        if kind in ("content", "thinking") and out and out[-1] == kind + "*":
            continue
        out.append(kind + "*" if kind in ("content", "thinking") else kind)
    return out


async def collect(manager: RunManager, run_id: str, after_seq: int = 0) -> list[RunEvent]:
    return [e async for e in manager.subscribe(run_id, after_seq)]


def text_of(events: list[RunEvent], kind: str = "content") -> str:
    return "".join(getattr(e, "content", "") for e in events if event_type(e) == kind)


def assert_seq(events: list[RunEvent], run_id: str) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(e.run_id == run_id for e in events)
    assert [event_type(e) for e in events].count("done") + [event_type(e) for e in events].count("error") == 1
    assert event_type(events[-1]) in ("done", "error")


def other_tasks() -> list[Any]:
    """Asyncio tasks other than the current one (a finished run leaves none behind)."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


def chunk(
    text: str, *, n: int, file_name: str = "guide.md", workspace_id: str = "ws_a", kb_id: str = "kb_1"
) -> ScoredChunk:
    record = ChunkRecord(
        id=f"chunk-{file_name}-{n}", workspace_id=workspace_id, kb_id=kb_id, file_id=f"file-{file_name}",
        file_name=file_name, file_type=file_name.rsplit(".", 1)[-1], ordinal=n, text=text, page=n,
    )  # fmt: skip
    return ScoredChunk(chunk=record, score=1.0 / (n + 1))
