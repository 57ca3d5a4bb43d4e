"""Cron schedules with time zones (croniter): validation and the next fire time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from engine.db.models import now
from engine.errors import InvalidInput


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {name!r}") from None


def check_cron(cron: str, timezone: str) -> None:
    """5-field cron, or 6 with seconds last; refused unless it fires at least once in the coming years."""
    if len(cron.split()) not in (5, 6) or not croniter.is_valid(cron):
        raise InvalidInput(f"invalid cron expression {cron!r}")
    try:
        next_fire(cron, timezone, now())
    except (ValueError, KeyError, CroniterBadDateError) as exc:  # e.g. "0 0 31 2 *" never fires
        raise InvalidInput(f"cron expression {cron!r} never fires") from exc


def next_fire(cron: str, timezone: str, after: float) -> float:
    """The first fire time strictly after ``after`` (Unix seconds), evaluated in ``timezone``."""
    start = datetime.fromtimestamp(after, zone(timezone))
    return float(croniter(cron, start, max_years_between_matches=5).get_next(float))
