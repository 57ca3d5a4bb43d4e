"""``ragline`` command line: serve, ingest, search, eval, reindex, optimize, token create, secrets."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import engine  # noqa: F401  (process environment first)
from api.cli_credentials import add_secrets_parser, add_token_parser, create_token, print_bootstrap, reseal_secrets
from engine.errors import EngineError
from engine.settings import Settings
from engine.types import SearchFilters

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from api.container import Services


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ragline", description="Ragline RAG knowledge and agent runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    ingest = sub.add_parser("ingest", help="ingest files and folders into a knowledge base")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--kb", required=True, help="the knowledge base's name (it must exist, unless --create)")
    ingest.add_argument("--create", action="store_true", help="create the knowledge base if there is none by that name")
    ingest.add_argument("--workspace", default="default")
    ingest.add_argument("--dry-run", action="store_true", help="preview: chunks, tokens, time; store nothing")
    search = sub.add_parser("search", help="search a knowledge base")
    search.add_argument("query")
    search.add_argument("--kb", required=True)
    search.add_argument("--workspace", default="default")
    search.add_argument("--top-k", type=int, default=5)
    search.add_argument("--mode", choices=["dense", "sparse", "hybrid"], default="hybrid")
    from api.cli_eval import add_eval_parser

    add_eval_parser(sub)
    sub.add_parser("reindex", help="rebuild the vector store from the stored files")
    sub.add_parser("optimize", help="build the embedded store's HNSW index (stop the server first; minutes)")
    add_token_parser(sub)
    add_secrets_parser(sub)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        _log_to_terminal()
        if args.command == "token":
            return asyncio.run(create_token(settings, args))  # the metadata database only: fine beside a server
        if args.command == "secrets":
            return asyncio.run(reseal_secrets(settings, args.secrets_command))
        if args.command == "ingest":
            missing = [path for path in args.paths if not path.exists()]
            if missing:  # before anything is opened or created
                for path in missing:
                    print(f"ragline: no such file or folder: {path}", file=sys.stderr)
                return 1
        return asyncio.run(_run_offline(settings, args))
    except EngineError as exc:
        PROGRESS.end_line()
        print(f"ragline: {exc.message}", file=sys.stderr)
        return 1


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from api.app import create_app
    from api.request_context import uvicorn_log_config

    # one process: the embedded Qdrant shard has a single owner; uvicorn's lines (access lines too) carry the
    # request id, like the app's own (api.request_context)
    uvicorn.run(
        create_app(settings), host=host or settings.host, port=port or settings.port, log_level="info",
        log_config=uvicorn_log_config(), access_log=settings.access_log,
    )  # fmt: skip
    return 0


class _Progress:
    """The one status line an ingest redraws (in place on a terminal; a new line per change otherwise)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.open = False  # a redrawn line is on screen without its newline
        self.last = ""

    def show(self, text: str) -> None:
        if self.stream.isatty():
            print(f"\r{text}", end="", file=self.stream, flush=True)
            self.open = True
        elif text.split(", ")[:-1] != self.last.split(", ")[:-1]:  # the counts changed (not only the seconds)
            print(text, file=self.stream, flush=True)
        self.last = text

    def end_line(self) -> None:
        if self.open:
            print(file=self.stream, flush=True)
            self.open = False


PROGRESS = _Progress()


class _TerminalLog(logging.StreamHandler[TextIO]):
    """``ragline: …`` lines on stderr (the model export, worker warnings) that never run into the progress line."""

    def emit(self, record: logging.LogRecord) -> None:
        PROGRESS.end_line()
        super().emit(record)


def _log_to_terminal() -> None:
    handler = _TerminalLog(sys.stderr)
    handler.setFormatter(logging.Formatter("ragline: %(message)s"))
    logger = logging.getLogger("ragline")
    if not any(isinstance(h, _TerminalLog) for h in logger.handlers):
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


async def _run_offline(settings: Settings, args: argparse.Namespace) -> int:
    from api.container import open_services

    services = await open_services(settings)
    try:
        print_bootstrap(await services.access.bootstrap(secret=settings.bootstrap_token or None), settings)
        if args.command == "ingest":
            return await _ingest(services, args)
        if args.command == "search":
            return await _search(services, args)
        if args.command == "eval":
            from api.cli_eval import run_eval

            ws = await _workspace_id(services.sessions, args.workspace)
            kb = await services.knowledge.find_kb_by_name(ws, args.kb)
            if kb is None:
                raise await _no_kb(services, ws, args)
            return await run_eval(services, args, ws, kb.id)
        if args.command == "reindex":
            count = await services.knowledge.requeue_all()
            print(f"re-indexing {count} files")
            await services.worker.recover()
            await _drain_with_progress(services, None)
            return 0
        if args.command == "optimize":
            return _optimize(services)
        return 2
    finally:
        await services.close()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "none yet"


async def _workspace_id(sessions: async_sessionmaker[AsyncSession], name: str) -> str:
    from sqlalchemy import select

    from engine.db.models import Workspace

    async with sessions() as session:
        ws = await session.scalar(select(Workspace.id).where(Workspace.name == name))
        if ws is None:
            existing = list(await session.scalars(select(Workspace.name).order_by(Workspace.name)))
            raise EngineError(f"no workspace named {name!r} (existing: {_names(existing)})")
    return ws


async def _kb_names(sessions: async_sessionmaker[AsyncSession], workspace_id: str) -> list[str]:
    from sqlalchemy import select

    from engine.db.models import KnowledgeBase

    async with sessions() as session:
        query = select(KnowledgeBase.name).where(KnowledgeBase.workspace_id == workspace_id)
        return list(await session.scalars(query.order_by(KnowledgeBase.name)))


async def _no_kb(services: Services, ws: str, args: argparse.Namespace, hint: str = "") -> EngineError:
    names = await _kb_names(services.sessions, ws)
    return EngineError(
        f"no knowledge base named {args.kb!r} in workspace {args.workspace!r} (existing: {_names(names)}){hint}"
    )


@dataclass
class _Plan:
    """What an ingest found: files to add, and what it refused or skipped before any work."""

    named: list[Path] = field(default_factory=list)  # files the command line names: refusing one is an error
    found: list[Path] = field(default_factory=list)  # files inside named folders: unsupported ones are skipped


def _plan(paths: Sequence[Path]) -> _Plan:
    plan = _Plan()
    for path in paths:
        if path.is_dir():
            inside = [
                p for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]  # fmt: skip
            if not inside:
                raise EngineError(f"{path} is a folder with no files in it")
            plan.found.extend(inside)
        elif path.is_file():
            plan.named.append(path)
        else:
            raise EngineError(f"{path} is neither a file nor a folder")
    return plan


async def _ingest(services: Services, args: argparse.Namespace) -> int:
    started = time.monotonic()
    plan = _plan(args.paths)
    ws = await _workspace_id(services.sessions, args.workspace)
    kb = await services.knowledge.find_kb_by_name(ws, args.kb)
    if args.dry_run and (kb is not None or args.create):
        from api.cli_preview import dry_run

        return await dry_run(services, ws, kb.id if kb else None, plan.named, plan.found)
    if kb is None:
        if not args.create:
            raise await _no_kb(services, ws, args, "; add --create to make it")
        kb = await services.knowledge.create_kb(ws, args.kb)
        print(f"created knowledge base {kb.name!r}")
    ids: list[str] = []
    refused = skipped = 0
    for path in [*plan.named, *plan.found]:
        try:
            with path.open("rb") as fh:
                info = await services.knowledge.add_file(ws, kb.id, filename=path.name, source=fh)
        except EngineError as exc:
            if path in plan.named:
                refused += 1
                print(f"ragline: cannot ingest {path}: {exc.message}", file=sys.stderr)
            else:
                skipped += 1
                print(f"  skipped {path}: {exc.message}", file=sys.stderr)
            continue
        if info.duplicate and info.status == "ready":
            skipped += 1
            print(f"  skipped {path}: already in {kb.name!r} (same content)", file=sys.stderr)
            continue
        if info.duplicate and info.status == "failed":  # it failed before: running ingest again retries it
            await services.knowledge.requeue(ws, info.id)
        ids.append(info.id)
    ready = chunks = failed = 0
    if ids:
        await services.worker.recover()
        failed = await _drain_with_progress(services, ids)
        ready, chunks = await _ready_counts(services, ids)
    print(
        f"ingested {_count(ready, 'file')} ({_count(chunks, 'chunk')}), {failed + refused} failed, {skipped} skipped "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 1 if failed or refused else 0


async def _ready_counts(services: Services, ids: list[str]) -> tuple[int, int]:
    from sqlalchemy import func, select

    from engine.db.models import File

    async with services.sessions() as session:
        row = (
            await session.execute(
                select(func.count(), func.sum(File.chunks_total)).where(File.id.in_(ids), File.status == "ready")
            )
        ).one()
    return int(row[0] or 0), int(row[1] or 0)


async def _drain_with_progress(services: Services, ids: list[str] | None) -> int:
    """Run the worker and draw a progress line until the queue is empty; returns the failed count."""
    from sqlalchemy import func, select

    from engine.db.models import File

    drain = asyncio.create_task(services.worker.drain(timeout_s=24 * 3600))
    started = time.monotonic()
    while True:
        async with services.sessions() as session:
            where = [File.id.in_(ids)] if ids is not None else []
            rows = (
                await session.execute(
                    select(File.status, func.count(), func.sum(File.chunks_done)).where(*where).group_by(File.status)
                )
            ).all()
        counts = {status: n for status, n, _ in rows}
        total = sum(counts.values())
        finished = counts.get("ready", 0) + counts.get("failed", 0)
        chunks = sum(c or 0 for _, _, c in rows)
        bar = "#" * int(30 * finished / max(total, 1))
        PROGRESS.show(
            f"[{bar:<30}] {finished}/{total} files, {chunks} chunks, {counts.get('failed', 0)} failed, "
            f"{time.monotonic() - started:.0f}s"
        )
        if drain.done():
            break
        await asyncio.sleep(0.5)
    PROGRESS.end_line()
    await drain
    async with services.sessions() as session:
        where = [File.id.in_(ids)] if ids is not None else []
        failures = (await session.execute(select(File.name, File.error).where(File.status == "failed", *where))).all()
    for name, error in failures:
        print(f"ragline: failed {name}: {error}", file=sys.stderr)
    return len(failures)


def _optimize(services: Services) -> int:
    """Build HNSW for the embedded shard: exact scans (40 ms at 100k chunks) become graph searches (6.6 ms).

    It holds the GIL for the whole build (~5 min at 100k chunks on 2 cores), which is why the server never
    runs it and it is a separate, offline command.
    """
    builder = services.index_builder
    if builder is None:
        print("ragline: a Qdrant server builds its indexes itself; nothing to do")
        return 0
    started = time.monotonic()
    builder.optimize()
    print(f"optimized in {time.monotonic() - started:.1f}s: {builder.indexed_vectors()} vectors in indexes")
    return 0


async def _search(services: Services, args: argparse.Namespace) -> int:
    from engine.retrieval import SearchRequest

    ws = await _workspace_id(services.sessions, args.workspace)
    kb = await services.knowledge.find_kb_by_name(ws, args.kb)
    if kb is None:
        raise await _no_kb(services, ws, args)
    hits = await services.retriever.retrieve(
        SearchRequest(
            query=args.query, filters=SearchFilters(workspace_id=ws, kb_ids=(kb.id,)), top_k=args.top_k, mode=args.mode
        )
    )
    for n, hit in enumerate(hits, 1):
        page = f" p.{hit.chunk.page}" if hit.chunk.page else ""
        text = " ".join(hit.chunk.text.split())[:200]
        print(f"{n}. [{hit.score:.3f}] {hit.chunk.file_name}{page}: {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
