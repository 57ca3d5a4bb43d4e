"""The schedule trigger loop: fires due cron triggers, at most once per due time, across restarts.

Restart semantics: the database holds each schedule's ``next_fire_at``. Firing first advances
``next_fire_at`` (computed from *now*, so missed periods are skipped, not replayed) with a
compare-and-set on the old value and commits, and only then starts the run. So a restart never
fires a period twice (the claim is durable before the run exists), and a fire time that passed
while the server was down fires once when it comes back; a crash between the commit and the run
start loses that one fire (at most one period). Overlap policy ``skip``: while an earlier run of
the same trigger is still running, the due fire is skipped (and the schedule still advances).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.background import PassLoop, Wakeup
from api.services.cron import next_fire, zone
from api.services.triggers import TriggerService
from engine.db.models import Run, Trigger, now
from engine.errors import EngineError

log = logging.getLogger("ragline.scheduler")

MAX_SLEEP_S = 5.0  # also picks up schedules changed by another process sharing the database


class Scheduler:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], triggers: TriggerService, wakeup: Wakeup | None = None
    ) -> None:
        """``wakeup``: the signal the trigger service gives when a schedule is created or changed."""
        self.sessions = sessions
        self.triggers = triggers
        self._loop = PassLoop(
            "trigger scheduler", self.fire_due, error_delay_s=MAX_SLEEP_S, min_delay_s=0.02, wakeup=wakeup
        )

    def wake(self) -> None:
        """A schedule was created or changed: look again now."""
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def fire_due(self) -> float:
        """Fire every due schedule once; returns the seconds until the next one is due."""
        current = now()
        async with self.sessions() as session:
            due = list(await session.scalars(select(Trigger).where(
                Trigger.type == "schedule", Trigger.enabled.is_(True), Trigger.next_fire_at <= current)))
        for row in due:
            await self._fire_one(row, current)
        async with self.sessions() as session:
            upcoming = await session.scalar(select(Trigger.next_fire_at).where(
                Trigger.type == "schedule", Trigger.enabled.is_(True), Trigger.next_fire_at.is_not(None))
                .order_by(Trigger.next_fire_at).limit(1))
        return min(MAX_SLEEP_S, upcoming - now()) if upcoming is not None else MAX_SLEEP_S

    async def _fire_one(self, row: Trigger, current: float) -> None:
        if not row.cron or row.next_fire_at is None:
            return
        due_at = row.next_fire_at
        following = next_fire(row.cron, row.timezone, max(current, due_at))
        overlapping = await self._still_running(row.id)
        if not await self._claim(row.id, due_at, following, fired=not overlapping, at=current):
            return  # another pass (or process) already took this fire
        if overlapping:
            log.info("schedule %s: skipped the fire due at %.0f (previous run still running)", row.id, due_at)
            return
        event = {"input": f"Scheduled run of {row.name}", "time": datetime.fromtimestamp(due_at, zone(row.timezone))
                 .isoformat(), "scheduled_at": due_at, "fired_at": current,
                 "trigger": {"id": row.id, "name": row.name, "type": row.type}}
        try:
            await self.triggers.fire(row, event)
        except EngineError as exc:  # e.g. the workspace is at its concurrent-run limit: this fire is lost
            log.warning("schedule %s: could not start its run: %s", row.id, exc.message)

    async def _still_running(self, trigger_id: str) -> bool:
        async with self.sessions() as session:
            return await session.scalar(select(Run.id).where(
                Run.trigger_id == trigger_id, Run.status == "running").limit(1)) is not None

    async def _claim(self, trigger_id: str, due_at: float, following: float, *, fired: bool, at: float) -> bool:
        """Advance the schedule durably (compare-and-set on the due time) before any run starts."""
        values: dict[str, float] = {"next_fire_at": following}
        if fired:
            values["last_fired_at"] = at
        async with self.sessions() as session:
            result = await session.execute(update(Trigger).where(
                Trigger.id == trigger_id, Trigger.next_fire_at == due_at).values(**values))
            await session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)
