"""Prompts: per-workspace templates with a draft, immutable numbered versions, a live version per environment,
A/B rollouts, and the runtime fetch (``api.services.prompt_runtime``). Templates: ``api.services.prompt_templates``;
what the API returns and accepts: ``api.services.prompt_views``; live versions: ``api.services.prompt_deployments``.

Publishing snapshots the draft as version ``latest + 1`` (author, note) and makes it live in one environment;
rolling back makes an earlier version live there again (versions are never rewritten); both end a rollout
in that environment, so the version the caller chose is what everyone gets. A rollout splits an environment
between versions by weight, sticky per assignment key. Every write bumps the prompt's ``revision`` first, so the
audit log records it as a change of the prompt (``prompt.publish``, ``prompt.rollback``, ``prompt.rollout``)
with the environment's before/after merged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jsonschema
import msgspec
from sqlalchemy import Text, cast, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.environments import EnvironmentService
from api.services.identity import Principal
from api.services.model_configs import ModelConfigService, checked_params
from api.services.prompt_deployments import check_variants, deploy, live_by_prompt, live_environments, version_row
from api.services.prompt_runtime import PromptRuntime, PromptSnapshot, ResolvedPrompt, Variant
from api.services.prompt_templates import check_messages
from api.services.prompt_views import LiveInfo, PromptFields, PromptInfo, VersionInfo
from engine.db.models import Agent, Prompt, PromptDeployment, PromptVersion, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, InvalidInput
from ingest.views import Page

OUTPUT_FORMATS = ("text", "json")
MAX_SCHEMA_BYTES = 65_536


class PromptService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], environments: EnvironmentService,
        model_configs: ModelConfigService,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.environments = environments
        self.model_configs = model_configs
        self.runtime = PromptRuntime(sessions, environments)

    # -- definitions -------------------------------------------------------------------------------------------

    async def create(self, principal: Principal, fields: PromptFields) -> PromptInfo:
        if not fields.key or not fields.messages:
            raise InvalidInput("a prompt needs a key and at least one message")
        row = Prompt(
            id=new_id("prm"), workspace_id=principal.workspace_id, key=fields.key, name=fields.name or fields.key,
            description="", category="", tags=[], messages=[], variables=[], params={}, output_format="text",
            latest_version=0, revision=0, created_by=principal.user_id, created_at=now(), updated_at=now(),
        )  # fmt: skip
        await self._apply(principal, row, fields)
        async with self.sessions() as session:
            session.add(row)
            await self._commit_unique(session, row.key)
        self.runtime.invalidate(principal.workspace_id, row.key)  # a fetch that missed it may have been cached
        return await self._info(row)

    async def get(self, principal: Principal, prompt_id: str) -> PromptInfo:
        async with self.sessions() as session:
            return await self._info(await self._row(session, principal, prompt_id), session)

    async def list(
        self, principal: Principal, *, q: str | None, category: str | None, tag: str | None,
        environment: str | None, page: int, limit: int,
    ) -> Page[PromptInfo]:  # fmt: skip
        where: list[Any] = [Prompt.workspace_id == principal.workspace_id]
        if q:
            where.append(or_(Prompt.key.icontains(q, autoescape=True), Prompt.name.icontains(q, autoescape=True),
                             Prompt.description.icontains(q, autoescape=True)))  # fmt: skip
        if category:
            where.append(Prompt.category == category)
        if tag:  # tags are a JSON list of plain strings: match the quoted element
            where.append(cast(Prompt.tags, Text).contains(msgspec.json.encode(tag).decode(), autoescape=True))
        if environment:
            env = await self.environments.resolve(principal.workspace_id, environment)
            live_there = select(PromptDeployment.prompt_id).where(PromptDeployment.environment_id == env.id)
            where.append(Prompt.id.in_(live_there))
        async with self.sessions() as session:
            total, rows = await fetch_page(session, Prompt, where, [Prompt.key, Prompt.id], page=page, limit=limit)
            live = await live_by_prompt(session, [r.id for r in rows])
        items = [PromptInfo.of(r, live.get(r.id, [])) for r in rows]
        return Page(items=items, page=page, limit=limit, total=total)

    async def update(self, principal: Principal, prompt_id: str, fields: PromptFields) -> PromptInfo:
        async with self.sessions() as session:
            row = await self._row(session, principal, prompt_id)
            old_key = row.key
            if fields.key is not None and fields.key != old_key:
                await self._check_unbound(session, principal.workspace_id, old_key, "rename")
            await self._apply(principal, row, fields)
            row.updated_at = now()
            await self._commit_unique(session, row.key)
            info = await self._info(row, session)
        for key in {old_key, row.key}:
            self.runtime.invalidate(principal.workspace_id, key)
        return info

    async def delete(self, principal: Principal, prompt_id: str) -> None:
        async with self.sessions() as session:
            row = await self._row(session, principal, prompt_id)
            await self._check_unbound(session, principal.workspace_id, row.key, "delete")
            key = row.key
            await session.delete(row)  # its versions and deployments go with it (ON DELETE CASCADE)
            await session.commit()
        self.runtime.invalidate(principal.workspace_id, key)

    # -- versions, live versions and rollouts --------------------------------------------------------------------

    async def publish(self, principal: Principal, prompt_id: str, env_ref: str | None, note: str) -> VersionInfo:
        environment = await self.environments.resolve(principal.workspace_id, env_ref)
        for _attempt in range(3):
            async with self.sessions() as session:
                row = await self._row(session, principal, prompt_id)
                number = row.latest_version + 1
                version = PromptVersion(
                    id=new_id("prv"), workspace_id=row.workspace_id, prompt_id=row.id, number=number,
                    messages=row.messages, variables=row.variables, model_config_id=row.model_config_id,
                    params=row.params, output_format=row.output_format, output_schema=row.output_schema,
                    note=note, author_id=principal.user_id, created_at=now(),
                )  # fmt: skip
                row.latest_version = number
                self._touch(row)
                session.add(version)
                await session.flush()  # the prompt first: the audit entry is the prompt's, the deployment merged in
                await deploy(session, principal, row, environment.id, number)
                try:
                    await session.commit()
                except IntegrityError:  # a concurrent publish took this number
                    await session.rollback()
                    continue
                self.runtime.invalidate(principal.workspace_id, row.key)
                return VersionInfo.of(version, [environment.name])
        raise Conflict("the prompt was published concurrently; try again")

    async def versions(self, principal: Principal, prompt_id: str, *, page: int, limit: int) -> Page[VersionInfo]:
        async with self.sessions() as session:
            await self._row(session, principal, prompt_id)
            where = [PromptVersion.prompt_id == prompt_id]
            order = [PromptVersion.number.desc()]
            total, rows = await fetch_page(session, PromptVersion, where, order, page=page, limit=limit)
            live_in = await live_environments(session, prompt_id)
        items = [VersionInfo.of(r, live_in.get(r.number, [])) for r in rows]
        return Page(items=items, page=page, limit=limit, total=total)

    async def version(self, principal: Principal, prompt_id: str, number: int) -> VersionInfo:
        async with self.sessions() as session:
            await self._row(session, principal, prompt_id)
            row = await version_row(session, prompt_id, number)
            return VersionInfo.of(row, (await live_environments(session, prompt_id)).get(number, []))

    async def rollback(self, principal: Principal, prompt_id: str, env_ref: str | None, number: int) -> LiveInfo:
        environment = await self.environments.resolve(principal.workspace_id, env_ref)
        async with self.sessions() as session:
            row = await self._row(session, principal, prompt_id)
            await version_row(session, prompt_id, number)
            self._touch(row)
            await session.flush()
            deployment = await deploy(session, principal, row, environment.id, number)
            await session.commit()
        self.runtime.invalidate(principal.workspace_id, row.key)
        return LiveInfo.of(deployment, environment.name)

    async def rollout(self, principal: Principal, prompt_id: str, env_ref: str | None) -> LiveInfo:
        environment = await self.environments.resolve(principal.workspace_id, env_ref)
        async with self.sessions() as session:
            await self._row(session, principal, prompt_id)
            deployment = await session.get(PromptDeployment, (prompt_id, environment.id))
        if deployment is None:
            return LiveInfo(prompt_id=prompt_id, environment_id=environment.id, environment=environment.name,
                            live_version=None, rollout=None, updated_by=None, updated_at=None)  # fmt: skip
        return LiveInfo.of(deployment, environment.name)

    async def set_rollout(
        self, principal: Principal, prompt_id: str, env_ref: str | None, variants: Sequence[Variant] | None
    ) -> LiveInfo:
        """Replace the environment's rollout (``None``: end it; everyone gets the live version again)."""
        environment = await self.environments.resolve(principal.workspace_id, env_ref)
        if variants is not None:
            check_variants(variants)
        async with self.sessions() as session:
            row = await self._row(session, principal, prompt_id)
            deployment = await session.get(PromptDeployment, (prompt_id, environment.id))
            if deployment is None:
                if variants is None:
                    return await self.rollout(principal, prompt_id, env_ref)
                raise Conflict(f"nothing is live in {environment.name!r} yet: publish a version there first")
            known = set(await session.scalars(select(PromptVersion.number).where(PromptVersion.prompt_id == prompt_id)))
            missing = sorted({v.version for v in variants or ()} - known)
            if missing:
                raise InvalidInput(f"prompt {row.key!r} has no version {', '.join(map(str, missing))}")
            rollout = [msgspec.structs.asdict(v) for v in variants] if variants is not None else None
            if deployment.rollout != rollout:
                self._touch(row)
                await session.flush()
                deployment.rollout, deployment.updated_by, deployment.updated_at = rollout, principal.user_id, now()
                await session.commit()
            view = LiveInfo.of(deployment, environment.name)
        self.runtime.invalidate(principal.workspace_id, row.key)
        return view

    # -- what runs, the playground and agents use ---------------------------------------------------------------

    async def draft(self, principal: Principal, prompt_id: str) -> tuple[Prompt, PromptSnapshot]:
        async with self.sessions() as session:
            row = await self._row(session, principal, prompt_id)
        return row, PromptSnapshot.of(row)

    async def resolve_by_id(
        self, principal: Principal, prompt_id: str, *, environment_id: str, assignment_key: str | None,
        pinned: int | None,
    ) -> ResolvedPrompt:  # fmt: skip
        async with self.sessions() as session:
            row = await self._row(session, principal, prompt_id)
        return await self.runtime.resolve(principal.workspace_id, row.key, environment_id=environment_id,
                                          assignment_key=assignment_key, pinned=pinned)  # fmt: skip

    async def check_binding(self, workspace_id: str, key: str, version: int | None) -> None:
        """An agent may name this prompt (and pin this version). Raises ``InvalidInput``."""
        async with self.sessions() as session:
            prompt_id = await session.scalar(
                select(Prompt.id).where(Prompt.workspace_id == workspace_id, Prompt.key == key)
            )
            if prompt_id is None:
                raise InvalidInput(f"no prompt with the key {key!r} in this workspace")
            if version is not None and await session.scalar(select(PromptVersion.id).where(
                    PromptVersion.prompt_id == prompt_id, PromptVersion.number == version)) is None:  # fmt: skip
                raise InvalidInput(f"prompt {key!r} has no version {version}")

    # -- internals -------------------------------------------------------------------------------------------------

    @staticmethod
    def _touch(row: Prompt) -> None:
        row.revision += 1
        row.updated_at = now()

    async def _row(self, session: AsyncSession, principal: Principal, prompt_id: str) -> Prompt:
        return await get_in_workspace(session, Prompt, prompt_id, principal.workspace_id, "prompt")

    async def _apply(self, principal: Principal, row: Prompt, fields: PromptFields) -> None:
        for name in ("key", "name", "description", "category", "tags"):
            value = getattr(fields, name)
            if value is not None:
                setattr(row, name, list(dict.fromkeys(value)) if name == "tags" else value)
        if fields.messages is not None or fields.variables is not None:
            messages = fields.messages if fields.messages is not None else PromptSnapshot.of(row).messages
            variables = fields.variables if fields.variables is not None else PromptSnapshot.of(row).variables
            check_messages(messages, variables)
            row.messages = [msgspec.structs.asdict(m) for m in messages]
            row.variables = [msgspec.structs.asdict(v) for v in variables]
        if fields.model_config_id is not None:
            if fields.model_config_id:
                await self.model_configs.check_usable(principal.workspace_id, fields.model_config_id)
            row.model_config_id = fields.model_config_id or None
        if fields.params is not None:
            row.params = checked_params(fields.params)
        if fields.output_format is not None:
            row.output_format = fields.output_format
        if fields.output_schema is not None:
            row.output_schema = _checked_schema(fields.output_schema) or None
        if row.output_format not in OUTPUT_FORMATS:
            raise InvalidInput(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
        if row.output_format == "text":
            row.output_schema = None  # a schema describes JSON output only

    @staticmethod
    async def _check_unbound(session: AsyncSession, workspace_id: str, key: str, verb: str) -> None:
        names = list(
            await session.scalars(
                select(Agent.name).where(Agent.workspace_id == workspace_id, Agent.prompt_key == key).limit(3)
            )
        )
        if names:
            raise Conflict(f"cannot {verb} prompt {key!r}: agents use it ({', '.join(names)}); unbind them first")

    @staticmethod
    async def _commit_unique(session: AsyncSession, key: str) -> None:
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise Conflict(f"a prompt with the key {key!r} already exists") from None

    async def _info(self, row: Prompt, session: AsyncSession | None = None) -> PromptInfo:
        if session is None:
            async with self.sessions() as own:
                live = await live_by_prompt(own, [row.id])
        else:
            live = await live_by_prompt(session, [row.id])
        return PromptInfo.of(row, live.get(row.id, []))


def _checked_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema a run can check answers against (an invalid one failed the run, not the save)."""
    if len(msgspec.json.encode(schema)) > MAX_SCHEMA_BYTES:
        raise InvalidInput(f"the output schema is over {MAX_SCHEMA_BYTES // 1024} KB")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidInput(f"output_schema is not a valid JSON Schema: {exc.message}") from None
    return schema
