"""``ragline`` command line: serve, ingest, search, reindex, optimize, token create."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import engine  # noqa: F401  (process environment first)
from api.container import Services, open_services
from engine.errors import EngineError
from engine.settings import Settings
from engine.types import SearchFilters


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ragline", description="Ragline RAG knowledge and agent runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    ingest = sub.add_parser("ingest", help="ingest files into a knowledge base (created if missing)")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--kb", required=True)
    ingest.add_argument("--workspace", default="default")
    search = sub.add_parser("search", help="search a knowledge base")
    search.add_argument("query")
    search.add_argument("--kb", required=True)
    search.add_argument("--workspace", default="default")
    search.add_argument("--top-k", type=int, default=5)
    search.add_argument("--mode", choices=["dense", "sparse", "hybrid"], default="hybrid")
    sub.add_parser("reindex", help="rebuild the vector store from the stored files")
    sub.add_parser("optimize", help="build the embedded store's HNSW index (stop the server first; minutes)")
    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a user with a role and print its token once")
    create.add_argument("--workspace", default="default")
    create.add_argument("--role", choices=["viewer", "editor", "admin"], default="editor")
    create.add_argument("--user", default="cli-user")
    create.add_argument("--name", default="cli token")
    keys = sub.add_parser("secrets", help="the key that seals variables and model credentials at rest")
    keys_sub = keys.add_subparsers(dest="secrets_command", required=True)
    keys_sub.add_parser("rotate", help="a new key in <data dir>/secret.key, every secret resealed, the old key dropped")
    keys_sub.add_parser("reseal", help="reseal every secret with the first key (after changing RAGLINE_SECRET_KEY)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        if args.command == "secrets":
            return asyncio.run(_secrets(settings, args.secrets_command))
        return asyncio.run(_run_offline(settings, args))
    except EngineError as exc:
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
        log_config=uvicorn_log_config(),
    )  # fmt: skip
    return 0


async def _run_offline(settings: Settings, args: argparse.Namespace) -> int:
    services = await open_services(settings)
    try:
        issued = await services.access.bootstrap()
        if issued is not None:
            print(f"ragline: bootstrap admin token (shown once): {issued.secret}")
        if args.command == "ingest":
            return await _ingest(services, args)
        if args.command == "search":
            return await _search(services, args)
        if args.command == "reindex":
            count = await services.knowledge.requeue_all()
            print(f"re-indexing {count} files")
            await services.worker.recover()
            await _drain_with_progress(services, None)
            return 0
        if args.command == "optimize":
            return _optimize(services)
        if args.command == "token":
            issued = await services.access.create_user_token(
                workspace_name=args.workspace, user_name=args.user, role=args.role, token_name=args.name
            )
            print(issued.secret)
            return 0
        return 2
    finally:
        await services.close()


async def _secrets(settings: Settings, command: str) -> int:
    """Rotation: seal everything with the current key; with a key file, make a new key first and drop the old."""
    from engine.secrets import add_key, drop_old_keys

    if command == "rotate":
        if settings.secret_key:
            raise EngineError("the keys come from RAGLINE_SECRET_KEY: put a new key first there and run 'reseal'")
        print(f"new key {add_key(settings.data_dir)}")
    services = await open_services(settings)
    try:
        count = await services.variables.reseal_all() + await services.model_configs.reseal_all()
    finally:
        await services.close()
    print(f"resealed {count} secrets with key {services.variables.box.current_id}")
    if command == "rotate":
        print(f"dropped {drop_old_keys(settings.data_dir)} old key(s)")
    return 0


async def _workspace_id(services: Services, name: str) -> str:
    from sqlalchemy import select

    from engine.db.models import Workspace

    async with services.sessions() as session:
        ws = await session.scalar(select(Workspace.id).where(Workspace.name == name))
    if ws is None:
        raise EngineError(f"no workspace named {name!r}")
    return ws


async def _ingest(services: Services, args: argparse.Namespace) -> int:
    ws = await _workspace_id(services, args.workspace)
    kb = await services.knowledge.find_kb_by_name(ws, args.kb) or await services.knowledge.create_kb(ws, args.kb)
    files = [p for path in args.paths for p in (sorted(path.rglob("*")) if path.is_dir() else [path]) if p.is_file()]
    ids = []
    for path in files:
        try:
            with path.open("rb") as fh:
                info = await services.knowledge.add_file(ws, kb.id, filename=path.name, source=fh)
            ids.append(info.id)
        except EngineError as exc:
            print(f"  skipped {path}: {exc.message}", file=sys.stderr)
    await services.worker.recover()
    failed = await _drain_with_progress(services, ids)
    return 1 if failed else 0


async def _drain_with_progress(services: Services, ids: list[str] | None) -> int:
    """Run the worker and draw a progress bar until the queue is empty; returns the failed count."""
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
        total = sum(counts.values()) or 1
        finished = counts.get("ready", 0) + counts.get("failed", 0)
        chunks = sum(c or 0 for _, _, c in rows)
        bar = "#" * int(30 * finished / total)
        print(
            f"\r[{bar:<30}] {finished}/{total} files, {chunks} chunks, {counts.get('failed', 0)} failed, "
            f"{time.monotonic() - started:.0f}s",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if drain.done():
            break
        await asyncio.sleep(0.5)
    print(file=sys.stderr)
    await drain
    async with services.sessions() as session:
        where = [File.id.in_(ids)] if ids is not None else []
        failures = (await session.execute(select(File.name, File.error).where(File.status == "failed", *where))).all()
    for name, error in failures:
        print(f"  failed {name}: {error}", file=sys.stderr)
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

    ws = await _workspace_id(services, args.workspace)
    kb = await services.knowledge.find_kb_by_name(ws, args.kb)
    if kb is None:
        raise EngineError(f"no knowledge base named {args.kb!r}")
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
