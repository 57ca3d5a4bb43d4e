"""The durable ingest queue: the ``files`` table's status moves, one statement each (the caller commits).

``queued`` -> ``processing`` (a claim counts an attempt) -> ``ready`` or ``failed``, or back to ``queued`` for a
retry after a backoff, or to wait for an unavailable store with its attempt given back. Every update of a
file in flight checks ``status == "processing"``: a file deleted (or reset) meanwhile is not written to, and the
caller learns so from the return value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.db.models import File, now
from engine.types import MetadataValue
from ingest.pipeline import FileJob

Labels = tuple[list[str], dict[str, MetadataValue]]  # a file's tags and metadata, as its row holds them now

_JOB_COLUMNS = (
    File.id, File.workspace_id, File.kb_id, File.name, File.sha256, File.file_type, File.tags, File.meta,
    File.created_at, File.attempts, File.chunks_total,
)  # fmt: skip


async def claim(session: AsyncSession, limit: int) -> list[FileJob]:
    """Up to ``limit`` queued files whose time has come, oldest first, marked processing.

    One ``UPDATE ... RETURNING`` (SQLite and PostgreSQL both have it): a select, an update and loading whole
    ORM rows took ~3x the CPU, once per claim, and claims come one file at a time while uploads stream in. A
    file another claimer took first fails the ``status`` check and is not returned.
    """
    oldest = (
        select(File.id)
        .where(File.status == "queued", File.next_attempt_at <= now())
        .order_by(File.created_at)
        .limit(limit)
    )
    claimed = list(await session.execute(
        update(File)
        .where(File.id.in_(oldest), File.status == "queued")
        .values(status="processing", started_at=now(), updated_at=now(), attempts=File.attempts + 1)
        .returning(*_JOB_COLUMNS)
        .execution_options(synchronize_session=False)
    ))  # fmt: skip
    return [_file_job(row) for row in sorted(claimed, key=lambda row: row.created_at)]


async def any_unfinished(session: AsyncSession) -> bool:
    busy = select(File.id).where(File.status.in_(("queued", "processing"))).limit(1)
    return await session.scalar(busy) is not None


async def requeue_processing(session: AsyncSession) -> None:
    """Files a stopped worker left ``processing`` go back to the queue, due now."""
    await session.execute(update(File).where(File.status == "processing").values(status="queued", next_attempt_at=0.0))


async def set_progress(session: AsyncSession, file_id: str, **values: object) -> bool:
    """Set columns of a file in flight; False when it is no longer processing (deleted meanwhile)."""
    result = await session.execute(
        update(File).where(File.id == file_id, File.status == "processing").values(updated_at=now(), **values)
    )
    return getattr(result, "rowcount", 0) == 1


async def finish(session: AsyncSession, finished: Sequence[tuple[str, Mapping[str, object]]]) -> set[str]:
    """Mark files this worker holds (``processing``) ``ready`` with their final columns; returns the ids that took
    it (a file deleted meanwhile has no row left to update).

    One executemany per set of columns (files that fit one batch carry their progress columns too) and one read
    back, instead of one statement per file: a batch of short files finishes a dozen at once.
    """
    if not finished:
        return set()
    groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for file_id, values in finished:
        params = {"b_id": file_id, **{f"b_{key}": value for key, value in values.items()}}
        groups.setdefault(tuple(sorted(values)), []).append(params)
    columns = inspect(File).columns
    for keys, rows in groups.items():
        await session.execute(
            update(cast(Table, File.__table__))  # Core: an executemany, not the ORM's bulk path
            .where(columns["id"] == bindparam("b_id"), columns["status"] == "processing")
            .values({columns["status"]: "ready", columns["updated_at"]: now(),
                     **{columns[key]: bindparam(f"b_{key}", type_=columns[key].type) for key in keys}}),
            rows,
        )  # fmt: skip
    ids = [file_id for file_id, _ in finished]
    return set(await session.scalars(select(File.id).where(File.id.in_(ids), File.status == "ready")))


async def current_labels(session: AsyncSession, file_ids: Sequence[str]) -> dict[str, Labels]:
    """Tags and metadata of the files that still exist, by id (edited while they were embedded, perhaps)."""
    if not file_ids:
        return {}
    rows = await session.execute(select(File.id, File.tags, File.meta).where(File.id.in_(file_ids)))
    return {row.id: (list(row.tags or []), dict(row.meta or {})) for row in rows}


async def postpone(session: AsyncSession, file_id: str, reason: str, delay_s: float) -> None:
    """Back to the queue after ``delay_s``, this attempt given back (the store was down, not the file bad)."""
    await session.execute(update(File).where(File.id == file_id).values(
        status="queued", attempts=File.attempts - 1, next_attempt_at=now() + delay_s, error=reason[:500],
        updated_at=now(),
    ))  # fmt: skip


async def fail(session: AsyncSession, file_id: str, reason: str, *, retry: bool, max_attempts: int) -> bool | None:
    """Retry later (exponential backoff) while attempts are left and ``retry`` allows, else fail for good.

    Returns:
        True when the file failed for good, False when it was queued again, None when it no longer exists.
    """
    row = await session.get(File, file_id)
    if row is None:
        return None
    if retry and row.attempts < max_attempts:
        row.status, row.next_attempt_at = "queued", now() + 2.0**row.attempts
    else:
        row.status, row.finished_at = "failed", now()
    row.error, row.updated_at = reason, now()
    return row.status == "failed"


def _file_job(row: Any) -> FileJob:
    """A claimed file (a row of ``_JOB_COLUMNS``, read after the claim counted this attempt)."""
    return FileJob(
        id=row.id,
        workspace_id=row.workspace_id,
        kb_id=row.kb_id,
        name=row.name,
        sha256=row.sha256,
        file_type=row.file_type,
        tags=list(row.tags or []),
        metadata=dict(row.meta or {}),
        created_at=row.created_at,
        fresh=row.attempts == 1 and not row.chunks_total,
    )
