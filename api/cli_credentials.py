"""``ragline token create`` and ``ragline secrets rotate|reseal``: API tokens and the key that seals secrets at rest,
and the bootstrap admin token every command prints once."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

from engine.errors import EngineError
from engine.settings import Settings

if TYPE_CHECKING:
    from api.services.access import AccessService
    from api.services.identity import IssuedToken

# a command that holds the database lock of a busy server waits this long for it (requests wait 2 s)
CLI_BUSY_TIMEOUT_S = 15.0


def add_token_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="API tokens (works while the server runs)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a user with a role and print its token once")
    create.add_argument("--workspace", default="default")
    create.add_argument("--role", choices=["viewer", "editor", "admin"], default="editor")
    create.add_argument("--user", default="cli-user")
    create.add_argument("--name", default="cli token")


def add_secrets_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("secrets", help="the key that seals variables and model credentials at rest")
    keys_sub = keys.add_subparsers(dest="secrets_command", required=True)
    keys_sub.add_parser("rotate", help="a new key in <data dir>/secret.key, every secret resealed, the old key dropped")
    keys_sub.add_parser("reseal", help="reseal every secret with the first key (after changing RAGLINE_SECRET_KEY)")


def print_bootstrap(issued: IssuedToken | None, settings: Settings, stream: TextIO | None = None) -> None:
    if issued is not None and not settings.bootstrap_token:  # a fixed RAGLINE_BOOTSTRAP_TOKEN is known already
        print(f"ragline: bootstrap admin token (shown once): {issued.secret}", file=stream or sys.stdout)


async def create_token(settings: Settings, args: argparse.Namespace) -> int:
    """A user and a token: rows in the metadata database, so this opens nothing else. The server owns the
    embedded vector store (an exclusive lock) but shares the database, so this works while it runs."""
    import engine.db.audit  # noqa: F401  (the same audit listener as the server's writes)
    from api.services.access import AccessService
    from engine.db.session import create_engine, migrate, session_factory

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = create_engine(
        settings.resolved_database_url, busy_timeout_s=max(settings.db_busy_timeout_s, CLI_BUSY_TIMEOUT_S),
        pool_timeout_s=settings.db_pool_timeout_s, connect_timeout_s=settings.db_connect_timeout_s,
    )  # fmt: skip
    try:
        await migrate(db)
        access: AccessService = AccessService(
            session_factory(db), mint_per_minute=settings.token_mint_per_minute,
            mint_per_day=settings.token_mint_per_day,
        )  # fmt: skip
        # on a database no server has started yet; stdout stays the new token alone: TOKEN=$(ragline token create)
        print_bootstrap(await access.bootstrap(secret=settings.bootstrap_token or None), settings, sys.stderr)
        issued = await access.create_user_token(
            workspace_name=args.workspace, user_name=args.user, role=args.role, token_name=args.name
        )
        print(issued.secret)
        return 0
    finally:
        await db.dispose()


async def reseal_secrets(settings: Settings, command: str) -> int:
    """Rotation: seal everything with the current key; with a key file, make a new key first and drop the old."""
    from api.container import open_services
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
