"""The event log's parts on a real SQLite database: ids, type patterns, the writer's order and group commit, and
the live feed's fan-out (a slow client is dropped, the others go on; another workspace's events never arrive)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.services.access import AccessService
from api.services.events import EventService
from api.services.live_feed import CLOSE_TOO_SLOW, LiveFeed
from engine.db.session import create_engine, migrate, session_factory
from engine.errors import InvalidInput
from engine.workspace_events import EventIds, WorkspaceEvent, check_type, id_time, is_event_id, type_matches

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[tuple[EventService, LiveFeed]]:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
    await migrate(db)
    sessions = session_factory(db)
    events = EventService(sessions)
    live = LiveFeed(events, AccessService(sessions), queue_size=3)
    events.start()
    yield events, live
    await events.stop()
    await db.dispose()


def test_ids_sort_in_emit_order_and_carry_their_time() -> None:
    ids = EventIds()
    made = [ids.next() for _ in range(10_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(is_event_id(i) for i in made) and not is_event_id("evt_x")
    assert abs((id_time(made[0]) or 0) - time.time()) < 60
    other = EventIds()
    assert other.tag != ids.tag or other.next() != ids.next()


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("*", "anything.at.all", True),
        ("file.*", "file.ready", True),
        ("file.*", "file.x.y", True),
        ("file.*", "file", False),
        ("file.*", "files.ready", False),
        ("run.finished", "run.finished", True),
        ("run.finished", "run.started", False),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.d", False),
        ("a.*.c", "a.b.x.c", False),
    ],
)
def test_type_patterns(pattern: str, event_type: str, matches: bool) -> None:
    assert type_matches(pattern, event_type) is matches


def test_members_cannot_emit_ragline_types() -> None:
    assert check_type("invoice.paid", user=True) == "invoice.paid"
    for reserved in ("file.ready", "run.finished", "token.revoked", "system.boot", "automation.loop_stopped"):
        check_type(reserved)  # Ragline's own may
        with pytest.raises(InvalidInput):
            check_type(reserved, user=True)


async def test_concurrent_emits_are_stored_and_told_in_id_order(log: tuple[EventService, LiveFeed]) -> None:
    events, _ = log
    told: list[WorkspaceEvent] = []
    events.listen(told.extend)
    emitted = await asyncio.gather(*(events.emit("ws_a", "x.y", {"n": n}, source="test") for n in range(200)))
    assert [e.id for e in told] == sorted(e.id for e in emitted), "listeners hear each event once, in id order"
    stored = await events.after("ws_a", "evt_" + "0" * 19, limit=1000)
    assert [e.id for e in stored] == [e.id for e in told]
    events.emit_nowait("ws_a", "x.z", {})
    assert events.emit_nowait("ws_a", "Not A Type", {}) is None, "never raises"


async def test_a_slow_live_client_is_dropped_and_the_others_get_everything(log: tuple[EventService, LiveFeed]) -> None:
    events, live = log
    from api.services.identity import Principal

    def principal(ws: str) -> Principal:
        return Principal(user_id="u", token_id="t", workspace_id=ws, role="viewer", kb_ids=None)

    fast, slow = live.connect(principal("ws_a"), "rl_x", kind="ws", remote="-"), live.connect(
        principal("ws_a"), "rl_x", kind="ws", remote="-")  # fmt: skip
    other = live.connect(principal("ws_b"), "rl_x", kind="sse", remote="-")
    received: list[str] = []

    async def read() -> None:
        async for event in live.stream(fast, None):
            received.append(event.id)
            if len(received) == 10:
                return

    reader = asyncio.create_task(read())
    sent = [await events.emit("ws_a", "x.y", {"n": n}, source="test") for n in range(10)]
    await asyncio.wait_for(reader, 10)
    assert received == [e.id for e in sent]
    assert slow.close_code == CLOSE_TOO_SLOW and fast.close_code is None
    assert [e async for e in live.stream(slow, None)] == [], "a dropped client's stream ends"
    assert other.queue.empty(), "another workspace's events never arrive"
    assert {c.id for c in live.clients(principal("ws_a"))} == {fast.id, slow.id}
    for client in (fast, slow, other):
        live.disconnect(client)
    assert live.clients(principal("ws_a")) == []
