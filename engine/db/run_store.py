"""``SqlRunStore``: runs and their events in the metadata database (SQLite or PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import Run, RunEventRow
from engine.events import ErrorEvent, RunEvent, decode_event, encode_event, event_type
from engine.run_records import RunRecord

_RECORD_FIELDS = tuple(f.name for f in msgspec.structs.fields(RunRecord))
INTERRUPTED = "interrupted by a server restart"


def _to_record(row: Run) -> RunRecord:
    return RunRecord(**{name: getattr(row, name) for name in _RECORD_FIELDS})


class SqlRunStore:
    """Implements ``engine.run_records.RunStore`` with the ``Run`` and ``RunEventRow`` tables."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = session_factory

    async def create_run(self, record: RunRecord) -> None:
        async with self._sessions.begin() as session:
            session.add(Run(**msgspec.structs.asdict(record)))

    async def append_events(self, run_id: str, events: Sequence[RunEvent]) -> None:
        rows = [
            RunEventRow(run_id=run_id, seq=e.seq, type=event_type(e), data=encode_event(e).decode()) for e in events
        ]
        async with self._sessions.begin() as session:
            session.add_all(rows)

    async def finish_run(self, record: RunRecord) -> None:
        values = {
            name: getattr(record, name)
            for name in _RECORD_FIELDS
            if name not in ("id", "workspace_id", "kind", "input", "started_at")
        }
        async with self._sessions.begin() as session:
            await session.execute(update(Run).where(Run.id == record.id).values(**values))

    async def get_run(self, run_id: str) -> RunRecord | None:
        async with self._sessions() as session:
            row = await session.get(Run, run_id)
            return _to_record(row) if row is not None else None

    async def list_events(self, run_id: str, after_seq: int = 0) -> list[RunEvent]:
        query = (
            select(RunEventRow.data)
            .where(RunEventRow.run_id == run_id, RunEventRow.seq > after_seq)
            .order_by(RunEventRow.seq)
        )
        async with self._sessions() as session:
            return [decode_event(data) for data in (await session.scalars(query)).all()]

    async def list_runs(
        self, workspace_id: str, *, agent_id: str | None = None, limit: int = 50, before: float | None = None
    ) -> list[RunRecord]:
        """A workspace's runs, newest first (``before``: ``started_at`` cursor for paging)."""
        query = select(Run).where(Run.workspace_id == workspace_id)
        if agent_id is not None:
            query = query.where(Run.agent_id == agent_id)
        if before is not None:
            query = query.where(Run.started_at < before)
        query = query.order_by(Run.started_at.desc()).limit(limit)
        async with self._sessions() as session:
            return [_to_record(row) for row in (await session.scalars(query)).all()]

    async def fail_unfinished(self, *, keep_kinds: Sequence[str] = ()) -> int:
        """Close runs a crashed process left ``running``: status failed plus a terminal error event.

        Call once at start-up, before this process starts runs (one process owns the runs). Runs of ``keep_kinds``
        are left alone: their owner resumes them (workflow runs).
        """
        now = time.time()
        async with self._sessions.begin() as session:
            unfinished = [Run.status == "running", Run.kind.not_in(list(keep_kinds))]
            rows = (await session.scalars(select(Run).where(*unfinished))).all()
            for row in rows:
                last = await session.scalar(select(func.max(RunEventRow.seq)).where(RunEventRow.run_id == row.id))
                event = ErrorEvent(run_id=row.id, seq=(last or 0) + 1, ts=now, code="internal", message=INTERRUPTED)
                session.add(RunEventRow(run_id=row.id, seq=event.seq, type="error", data=encode_event(event).decode()))
            await session.execute(
                update(Run)
                .where(*unfinished)
                .values(status="failed", error=INTERRUPTED, error_code="internal", finished_at=now)
            )
            return len(rows)
