"""Async engine/session factory, schema migration at start-up, and what a database failure means to a caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from engine.errors import EngineError, StorageFull, Unavailable

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Defaults of the RAGLINE_DB_*_TIMEOUT_S settings (engine.settings.Settings): a request that cannot get the
# database within these answers 503 quickly (it used to wait 10 s for a SQLite lock, 30 s to connect, and fail
# with a 500).
BUSY_TIMEOUT_S = 2.0
POOL_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
RETRY_AFTER_S = 2.0


class DatabaseUnreachable(sa_exc.OperationalError):
    """Opening a connection failed outside the driver's own error classes (refused, timed out, too many
    clients): raised in place of the driver's ``OSError``/``TimeoutError`` so every caller sees one type."""


def _sqlite_pragmas(busy_timeout_s: float) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        # busy_timeout first (even switching to WAL waits for a lock): the ingest worker and request handlers share
        # one file, and a statement that cannot get its lock in time fails (-> 503) instead of hanging.
        # WAL: readers never block the writer; FULL sync: an acknowledged upload survives power loss.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={max(0, round(busy_timeout_s * 1000))}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return apply


def _typed_connect_failures(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    """``do_connect``: connect as usual, but a failure that is not the driver's own error (asyncpg raises a bare
    ``ConnectionRefusedError``, ``TimeoutError`` or its own exceptions) becomes ``DatabaseUnreachable``."""
    try:
        return dialect.connect(*cargs, **cparams)
    except dialect.loaded_dbapi.Error:
        raise  # SQLAlchemy wraps these itself (e.g. sqlite's "database is locked" -> OperationalError)
    except Exception as exc:
        raise DatabaseUnreachable(None, None, exc) from exc


def _in_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and (
        parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    )


def create_engine(
    url: str,
    *,
    busy_timeout_s: float = BUSY_TIMEOUT_S,
    pool_timeout_s: float = POOL_TIMEOUT_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, foreign keys and a short busy timeout.

    ``busy_timeout_s``: how long a SQLite statement waits for another connection's lock; ``pool_timeout_s``: how
    long a caller waits for a free pooled connection; ``connect_timeout_s``: how long connecting to a database
    server may take. Past any of them the caller gets an error that ``database_fault`` reads as ``Unavailable``.
    """
    options: dict[str, Any] = {} if _in_memory(url) else {"pool_timeout": pool_timeout_s}
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": busy_timeout_s}, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_timeout_s))
    else:
        if url.startswith("postgresql+asyncpg"):
            options["connect_args"] = {"timeout": connect_timeout_s}
        engine = create_async_engine(url, pool_pre_ping=True, **options)
    event.listen(engine.sync_engine, "do_connect", _typed_connect_failures)
    return engine


_FULL = ("database or disk is full", "disk full", "no space left", "could not extend file", "quota exceeded")
_UNAVAILABLE = (
    "database is locked", "database table is locked", "database schema is locked", "unable to open database file",
    "too many connections", "too many clients", "remaining connection slots are reserved", "connection refused",
    "could not connect", "connect call failed", "connection was closed", "connection is closed",
    "server closed the connection", "connection reset", "terminating connection", "the database system is",
    "cannot connect now", "timeout expired", "timed out",
)  # fmt: skip


def database_fault(exc: BaseException) -> EngineError | None:
    """What a database failure means to a caller: ``Unavailable`` (locked, unreachable, out of connections: retry
    shortly), ``StorageFull`` (the database's disk is full), or ``None`` (a bug or a constraint: not ours to
    rename). The API answers the first with 503 and ``Retry-After``, the second with 507."""
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no free connection in time
        return _unavailable("no database connection came free in time")
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    text = str(exc.orig if exc.orig is not None else exc).lower()
    if any(words in text for words in _FULL):
        return StorageFull("the database has no space left to store this change")
    connecting = isinstance(exc, DatabaseUnreachable) or (
        isinstance(exc, sa_exc.OperationalError) and exc.statement is None
    )
    if connecting or exc.connection_invalidated or any(words in text for words in _UNAVAILABLE):
        return _unavailable("the metadata database is locked or unreachable")
    return None


def _unavailable(reason: str) -> Unavailable:
    return Unavailable(
        f"{reason}; retry in a moment", code="database_unavailable", retry_after=RETRY_AFTER_S,
        summary="Database unavailable",
    )  # fmt: skip


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
