"""Workflows, their versions and reusable steps, and what a workflow run needs to resume."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.db.models.base import Base, now


class Workflow(Base):
    """A workflow: a name and numbered, immutable versions of its definition (revision 0009)."""

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_workflow_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class WorkflowVersion(Base):
    """One saved definition of a workflow (engine.workflows.WorkflowSpec), as written: ``uses`` stays a reference."""

    __tablename__ = "workflow_versions"
    __table_args__ = (UniqueConstraint("workflow_id", "number", name="uq_workflow_version"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    number: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    step_refs: Mapped[list[str]] = mapped_column(JSON, default=list)  # reusable steps it uses (their usage)
    note: Mapped[str] = mapped_column(Text, default="")
    author_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class WorkflowStepDef(Base):
    """A reusable step definition (seed 003's workflow entities): saved once, named by ``uses`` in workflows."""

    __tablename__ = "workflow_steps"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_workflow_step_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    entity_type: Mapped[str] = mapped_column(String(16), default="action")  # event | prompt | action | result
    kind: Mapped[str] = mapped_column(String(16))  # the step kind
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the step's fields but id and after
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class WorkflowRun(Base):
    """What a workflow run needs to resume after a restart: its steps as run and who started it."""

    __tablename__ = "workflow_runs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    workflow_id: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)  # the spec with its steps resolved (``uses`` merged)
    principal: Mapped[dict[str, Any]] = mapped_column(JSON)  # user, token, role and knowledge-base scope
    created_at: Mapped[float] = mapped_column(Float, default=now)


class WorkflowStepResult(Base):
    """A finished step of a workflow run, stored as it finishes (a resumed run does not run it again)."""

    __tablename__ = "workflow_step_results"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)  # engine.workflows.StepRecord
    status: Mapped[str] = mapped_column(String(16))  # succeeded | failed | skipped
    finished_at: Mapped[float] = mapped_column(Float, default=now)
