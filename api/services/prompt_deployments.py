"""Which version of a prompt is live in which environment: making one live, checking a rollout, reading them back."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.services.identity import Principal
from api.services.prompt_runtime import Variant
from api.services.prompt_views import LiveInfo
from engine.db.models import Environment, Prompt, PromptDeployment, PromptVersion, now
from engine.errors import InvalidInput, NotFound


async def version_row(session: AsyncSession, prompt_id: str, number: int) -> PromptVersion:
    row = await session.scalar(
        select(PromptVersion).where(PromptVersion.prompt_id == prompt_id, PromptVersion.number == number)
    )
    if row is None:
        raise NotFound("prompt version", str(number))
    return row


async def deploy(
    session: AsyncSession, principal: Principal, row: Prompt, environment_id: str, number: int
) -> PromptDeployment:
    """Make ``number`` live in the environment; its rollout there ends."""
    deployment = await session.get(PromptDeployment, (row.id, environment_id))
    if deployment is None:
        deployment = PromptDeployment(prompt_id=row.id, environment_id=environment_id,
                                      workspace_id=row.workspace_id, created_at=now())  # fmt: skip
        session.add(deployment)
    deployment.version, deployment.rollout = number, None
    deployment.updated_by, deployment.updated_at = principal.user_id, now()
    return deployment


def check_variants(variants: Sequence[Variant]) -> None:
    problems = []
    if not variants:
        problems.append("a rollout needs at least one variant")
    if len({v.version for v in variants}) != len(variants):
        problems.append("each version may appear once")
    if any(not 0 <= v.weight <= 100 for v in variants):
        problems.append("weights are whole percentages from 0 to 100")
    if sum(v.weight for v in variants) != 100:
        problems.append(f"weights must sum to 100 (they sum to {sum(v.weight for v in variants)})")
    if problems:
        raise InvalidInput("; ".join(problems))


async def live_by_prompt(session: AsyncSession, prompt_ids: Sequence[str]) -> dict[str, list[LiveInfo]]:
    """Each prompt's live state, per environment where it has one (environments oldest first)."""
    if not prompt_ids:
        return {}
    rows = await session.execute(
        select(PromptDeployment, Environment.name)
        .join(Environment, Environment.id == PromptDeployment.environment_id)
        .where(PromptDeployment.prompt_id.in_(prompt_ids))
        .order_by(Environment.created_at, Environment.id)
    )
    out: dict[str, list[LiveInfo]] = {}
    for deployment, name in rows.tuples():
        out.setdefault(deployment.prompt_id, []).append(LiveInfo.of(deployment, name))
    return out


async def live_environments(session: AsyncSession, prompt_id: str) -> dict[int, list[str]]:
    """The environments where each of the prompt's versions is live, by version number."""
    rows = await session.execute(
        select(PromptDeployment.version, Environment.name)
        .join(Environment, Environment.id == PromptDeployment.environment_id)
        .where(PromptDeployment.prompt_id == prompt_id)
        .order_by(Environment.name)
    )
    out: dict[int, list[str]] = {}
    for number, name in rows.tuples():
        out.setdefault(number, []).append(name)
    return out
