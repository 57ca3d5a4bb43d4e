"""``Collections`` on both backends: the embedded store keeps each collection in a shard directory of its own,
a Qdrant server as a collection of its own (sharing the default store's client), with native aliases."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from engine.ports import VectorStore
from engine.settings import Settings
from engine.stores._common import IdfScope
from engine.stores.edge import EdgeVectorStore

if TYPE_CHECKING:  # qdrant_client costs ~1 s of every start; the embedded default never needs it
    from engine.stores.qdrant_server import QdrantServerVectorStore

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _checked(name: str) -> str:
    # names become directory names and collection names: never a path
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid collection name {name!r}")
    return name


class EdgeCollections:
    """Each collection is an embedded shard under ``root`` (``<data dir>/collections/<name>``), opened once."""

    def __init__(self, root: Path, *, idf_scope: IdfScope = "workspace") -> None:
        self.root = Path(root)
        self.idf_scope = idf_scope
        self._open: dict[str, EdgeVectorStore] = {}

    def open(self, name: str, dim: int) -> VectorStore:
        store = self._open.get(_checked(name))
        if store is None:
            store = self._open[name] = EdgeVectorStore(self.root / name, dim, idf_scope=self.idf_scope)
        return store

    async def drop(self, name: str) -> None:
        store = self._open.pop(_checked(name), None)
        if store is not None:
            await store.close()
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(self.root / name, ignore_errors=True))

    async def point_alias(self, alias: str, name: str) -> None:
        """The embedded store has no aliases: the pointer in the metadata database is the only one."""

    async def close(self) -> None:
        for store in self._open.values():
            await store.close()
        self._open.clear()


class QdrantCollections:
    """Collections on the default store's Qdrant server (or its local in-memory mode, in tests)."""

    def __init__(self, default: QdrantServerVectorStore) -> None:
        self.default = default
        self._open: dict[str, QdrantServerVectorStore] = {}

    def open(self, name: str, dim: int) -> VectorStore:
        store = self._open.get(_checked(name))
        if store is None:
            store = self._open[name] = self.default.sibling(name, dim)
        return store

    async def drop(self, name: str) -> None:
        self._open.pop(_checked(name), None)
        await self.default.drop_collection(name)

    async def point_alias(self, alias: str, name: str) -> None:
        await self.default.point_alias(_checked(alias), _checked(name))

    async def close(self) -> None:
        self._open.clear()  # they share the default store's client, which the default store closes


def collections_for(store: VectorStore, settings: Settings) -> EdgeCollections | QdrantCollections:
    """The collections beside the default store: on its Qdrant server, else shards under the data directory."""
    server = sys.modules.get("engine.stores.qdrant_server")  # not imported: no store can be a server's
    if server is not None and isinstance(store, server.QdrantServerVectorStore):
        return QdrantCollections(store)
    from engine.stores import _idf_scope

    return EdgeCollections(settings.data_dir / "collections", idf_scope=_idf_scope(settings))
