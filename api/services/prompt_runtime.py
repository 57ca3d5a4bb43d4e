"""The runtime side of prompts: which version a caller gets (live version, A/B rollout with sticky assignment)
and the cached answer of ``GET /sdk/prompts/{key}``.

Assignment is a pure function: ``bucket = sha256(prompt id, environment id, assignment key) mod 100`` walks the
rollout's cumulative weights, so the same key always gets the same version, across calls, restarts and
processes, and nothing random is stored. A call without an assignment key gets the environment's live version.

Caching: the resolved state of a prompt (its live version and rollout per environment), each version's
immutable snapshot, each served answer (encoded once, with a strong ``ETag`` over its bytes) and each
workspace's environments are kept in memory. This process's writes invalidate them: ``PromptService``
calls ``invalidate`` after every publish, rollback, rollout change, edit and delete commits, and any flush
that touches an environment (or deletes a workspace) bumps a generation that drops the environment index.
A load that raced with an invalidation is not kept. One process owns the data, as ``ragline serve`` runs
(one process per data directory); several processes sharing one PostgreSQL database would not see each
other's writes until they restart, and are out of scope.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from api.envelope import Envelope
from api.services.environments import EnvironmentService
from api.services.prompt_templates import PromptMessage, VariableDef
from engine.db.models import Environment, Prompt, PromptDeployment, PromptVersion, Workspace
from engine.errors import NotFound
from engine.ids import utc

MAX_CACHED_PROMPTS = 10_000
MAX_CACHED_VERSIONS = 4_096


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    weight: int  # percent; a rollout's weights sum to 100


class PromptSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What a version freezes (and what the draft holds)."""

    messages: list[PromptMessage]
    variables: list[VariableDef]
    model_config_id: str | None
    params: dict[str, Any]
    output_format: str
    output_schema: dict[str, Any] | None

    @classmethod
    def of(cls, row: Prompt | PromptVersion) -> PromptSnapshot:
        return cls(
            messages=msgspec.convert(row.messages or [], list[PromptMessage]),
            variables=msgspec.convert(row.variables or [], list[VariableDef]),
            model_config_id=row.model_config_id, params=dict(row.params or {}), output_format=row.output_format,
            output_schema=row.output_schema,
        )  # fmt: skip


class ResolvedPrompt(msgspec.Struct, frozen=True, kw_only=True):
    """The version a caller gets: ``source`` says why (``pinned``, ``live`` or ``rollout``)."""

    prompt_id: str
    key: str
    name: str
    version: int
    source: str
    snapshot: PromptSnapshot


class PromptServed(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /sdk/prompts/{key}``: the version to use, as stored (render it with its declared variables)."""

    prompt_id: str
    key: str
    name: str
    version: int
    environment: str
    environment_id: str
    source: str  # live (the environment's live version) | rollout (picked by the assignment key)
    live_version: int
    rollout: list[Variant] | None
    messages: list[PromptMessage]
    variables: list[VariableDef]
    model_config_id: str | None
    params: dict[str, Any]
    output_format: str
    output_schema: dict[str, Any] | None
    note: str
    published_at: datetime


class Served(msgspec.Struct, frozen=True):
    body: bytes  # the encoded envelope
    etag: str  # strong: a hash of ``body``


def bucket(prompt_id: str, environment_id: str, assignment_key: str) -> int:
    """The assignment key's bucket in [0, 100) for this prompt and environment (stable forever)."""
    digest = hashlib.sha256(f"{prompt_id}\x1f{environment_id}\x1f{assignment_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def choose(variants: tuple[Variant, ...], slot: int) -> int:
    edge = 0
    for variant in variants:
        edge += variant.weight
        if slot < edge:
            return variant.version
    return variants[-1].version


def _variants(rollout: list[Any] | None) -> tuple[Variant, ...] | None:
    return tuple(msgspec.convert(rollout, list[Variant])) if rollout else None


class _Live(msgspec.Struct, frozen=True):
    version: int
    variants: tuple[Variant, ...] | None


class _State(msgspec.Struct):
    prompt_id: str
    key: str
    name: str
    live: dict[str, _Live]  # environment id -> live version and rollout
    served: dict[tuple[str, str, int, str], Served] = {}


class _Environments(msgspec.Struct, frozen=True):
    generation: int
    by_ref: dict[str, tuple[str, str]]  # id or name -> (id, name)
    default: tuple[str, str] | None


# -- environments changed anywhere in this process: drop the environment index ------------------------------------

_environment_generation = itertools.count(1)
_generation = [0]
_FLAG = "ragline_environments_changed"


def _bump() -> None:
    _generation[0] = next(_environment_generation)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    if any(isinstance(o, (Environment, Workspace)) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info[_FLAG] = True
        _bump()


@event.listens_for(Session, "do_orm_execute")
def _bulk_write(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is not None and mapper.class_ in (Environment, Workspace):
        state.session.info[_FLAG] = True
        _bump()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_FLAG, False):
        _bump()  # again: a read between the flush and the commit saw the old rows


class PromptRuntime:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], environments: EnvironmentService) -> None:
        self.sessions = sessions
        self.environments = environments
        self._states: OrderedDict[tuple[str, str], _State] = OrderedDict()
        self._generations: dict[tuple[str, str], int] = {}
        self._versions: OrderedDict[tuple[str, int], tuple[PromptSnapshot, str, float]] = OrderedDict()
        self._envs: dict[str, _Environments] = {}

    def invalidate(self, workspace_id: str, key: str) -> None:
        """Forget a prompt's state (call after the write commits)."""
        cache_key = (workspace_id, key)
        self._generations[cache_key] = self._generations.get(cache_key, 0) + 1
        self._states.pop(cache_key, None)

    # -- environments -----------------------------------------------------------------------------------------

    async def environment(self, workspace_id: str, ref: str | None) -> tuple[str, str]:
        """(id, name) of the environment named by id or name, or of the default. Raises ``NotFound``."""
        index = self._envs.get(workspace_id)
        if index is None or index.generation != _generation[0]:
            index = await self._load_environments(workspace_id)
        found = index.default if ref is None else index.by_ref.get(ref)
        if found is None:
            raise NotFound("environment", ref)
        return found

    async def _load_environments(self, workspace_id: str) -> _Environments:
        generation = _generation[0]
        default = await self.environments.resolve(workspace_id, None)  # makes 'production' for a new workspace
        async with self.sessions() as session:
            rows = (await session.execute(
                select(Environment.id, Environment.name).where(Environment.workspace_id == workspace_id)
            )).all()  # fmt: skip
        by_ref = {name: (ident, name) for ident, name in rows}
        by_ref.update({ident: (ident, name) for ident, name in rows})
        index = _Environments(generation=generation, by_ref=by_ref, default=by_ref.get(default.id))
        if generation == _generation[0]:
            self._envs[workspace_id] = index
        return index

    # -- resolving ---------------------------------------------------------------------------------------------

    async def _state(self, workspace_id: str, key: str) -> _State:
        cache_key = (workspace_id, key)
        state = self._states.get(cache_key)
        if state is not None:
            return state
        generation = self._generations.get(cache_key, 0)
        async with self.sessions() as session:
            row = (await session.execute(select(Prompt.id, Prompt.name).where(
                Prompt.workspace_id == workspace_id, Prompt.key == key))).first()  # fmt: skip
            if row is None:
                raise NotFound("prompt", key)
            deployments = await session.scalars(select(PromptDeployment).where(PromptDeployment.prompt_id == row.id))
            live = {d.environment_id: _Live(d.version, _variants(d.rollout)) for d in deployments}
        state = _State(prompt_id=row.id, key=key, name=row.name, live=live)
        if self._generations.get(cache_key, 0) == generation:
            self._states[cache_key] = state
            if len(self._states) > MAX_CACHED_PROMPTS:
                self._states.popitem(last=False)
        return state

    async def _version(self, prompt_id: str, number: int) -> tuple[PromptSnapshot, str, float]:
        """A version's snapshot, note and time (immutable: cached without invalidation)."""
        cached = self._versions.get((prompt_id, number))
        if cached is not None:
            return cached
        async with self.sessions() as session:
            row = await session.scalar(
                select(PromptVersion).where(PromptVersion.prompt_id == prompt_id, PromptVersion.number == number)
            )
        if row is None:
            raise NotFound("prompt version", str(number))
        cached = (PromptSnapshot.of(row), row.note, row.created_at)
        self._versions[(prompt_id, number)] = cached
        if len(self._versions) > MAX_CACHED_VERSIONS:
            self._versions.popitem(last=False)
        return cached

    @staticmethod
    def _pick(state: _State, environment: tuple[str, str], assignment_key: str | None) -> tuple[int, str, _Live]:
        live = state.live.get(environment[0])
        if live is None:
            raise NotFound("published prompt", f"{state.key} in {environment[1]}")
        if live.variants and assignment_key:
            return choose(live.variants, bucket(state.prompt_id, environment[0], assignment_key)), "rollout", live
        return live.version, "live", live

    async def resolve(
        self, workspace_id: str, key: str, *, environment_id: str, assignment_key: str | None,
        pinned: int | None = None,
    ) -> ResolvedPrompt:  # fmt: skip
        """The version a run uses: ``pinned``, else the environment's live version or its rollout's pick."""
        state = await self._state(workspace_id, key)
        if pinned is not None:
            number, source = pinned, "pinned"
        else:
            environment = await self.environment(workspace_id, environment_id)
            number, source, _ = self._pick(state, environment, assignment_key)
        snapshot, _, _ = await self._version(state.prompt_id, number)
        return ResolvedPrompt(
            prompt_id=state.prompt_id, key=state.key, name=state.name, version=number, source=source,
            snapshot=snapshot,
        )  # fmt: skip

    async def fetch(self, workspace_id: str, key: str, env_ref: str | None, assignment_key: str | None) -> Served:
        """The answer of ``GET /sdk/prompts/{key}``: cached bytes and their ETag on the warm path."""
        environment = await self.environment(workspace_id, env_ref)
        state = await self._state(workspace_id, key)
        number, source, live = self._pick(state, environment, assignment_key)
        served_key = (*environment, number, source)
        served = state.served.get(served_key)
        if served is None:
            snapshot, note, published = await self._version(state.prompt_id, number)
            data = PromptServed(
                prompt_id=state.prompt_id, key=state.key, name=state.name, version=number, environment=environment[1],
                environment_id=environment[0], source=source, live_version=live.version,
                rollout=list(live.variants) if live.variants else None, messages=snapshot.messages,
                variables=snapshot.variables, model_config_id=snapshot.model_config_id, params=snapshot.params,
                output_format=snapshot.output_format, output_schema=snapshot.output_schema, note=note,
                published_at=utc(published),
            )  # fmt: skip
            body = msgspec.json.encode(Envelope(data=data))
            served = Served(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"')
            state.served[served_key] = served
        return served


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` (a list of tags, weak ones included, or ``*``) names this ETag."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags
