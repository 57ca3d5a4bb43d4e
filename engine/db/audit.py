"""The audit log of every write: recorded by the ORM, in the same transaction as the write it describes.

The API sets ``audit_scope`` for a request (who, which token, which action, the request id) once it knows
the caller. A ``before_flush`` listener then turns what that request changes in the metadata database into
one ``AuditRecord`` per request: the action, the main resource (the first row the request created, changed
or deleted, preferring the kind the action names), and a before/after of its changed fields. Secrets never
reach the record: sealed values, hashes and secret columns show as ``"[set]"``/``None``. Writes outside a
request scope (the ingest worker's progress, a schedule firing) and conversation tables (chat messages,
runs and their events, which keep their own records) are not audited.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from engine.db.models import AuditRecord
from engine.ids import now

NOT_AUDITED = frozenset({
    "runs", "run_events", "chat_sessions", "chat_messages", "callback_deliveries", "webhook_deliveries",
    "token_audit", "audit_log", "workflow_runs", "workflow_step_results",
    "subscription_deliveries",
})  # fmt: skip
_SECRET_COLUMN = re.compile(r"(_sealed|_hash|secret|password)", re.IGNORECASE)
_NOISE = frozenset({"created_at", "updated_at", "last_used_at"})
SINGULAR = {
    "knowledge_bases": "knowledge_base", "files": "file", "agents": "agent", "triggers": "trigger",
    "api_tokens": "token", "workspaces": "workspace", "memberships": "member", "users": "user",
    "environments": "environment", "variables": "variable", "model_configs": "model", "prompts": "prompt",
    "prompt_versions": "prompt_version", "prompt_deployments": "prompt_deployment",
    "golden_sets": "golden_set", "evaluations": "evaluation", "index_switches": "index_switch",
    "workflows": "workflow", "workflow_versions": "workflow_version", "workflow_steps": "workflow_step",
    "workspace_events": "event", "automations": "automation", "subscriptions": "subscription",
}  # fmt: skip


@dataclass
class AuditScope:
    """Who writes, in which workspace, doing what (set per request by the API)."""

    workspace_id: str
    action: str  # e.g. "agent.update"
    user_id: str | None = None
    token_id: str | None = None
    request_id: str | None = None
    record: AuditRecord | None = field(default=None, repr=False)  # this request's entry, once written

    @property
    def resource(self) -> str:
        return self.action.split(".", 1)[0]


audit_scope: contextvars.ContextVar[AuditScope | None] = contextvars.ContextVar("audit_scope", default=None)


def _redacted(column: str, value: Any) -> Any:
    if _SECRET_COLUMN.search(column):
        return "[set]" if value is not None else None
    return value


def _changes(obj: Any, kind: str) -> dict[str, dict[str, Any]]:
    state = inspect(obj)
    out: dict[str, dict[str, Any]] = {}
    for attr in state.mapper.column_attrs:
        name = attr.key
        if name in _NOISE:
            continue
        history = state.attrs[name].history
        if kind == "create":
            value = getattr(obj, name)
            if value is not None:
                out[name] = {"before": None, "after": _redacted(name, value)}
        elif kind == "delete":
            value = history.unchanged[0] if history.unchanged else (history.deleted[0] if history.deleted else None)
            out[name] = {"before": _redacted(name, value), "after": None}
        elif history.has_changes():
            before = history.deleted[0] if history.deleted else None
            after = history.added[0] if history.added else None
            if before != after:
                out[name] = {"before": _redacted(name, before), "after": _redacted(name, after)}
    return out


def _touched(session: Session) -> list[tuple[str, Any, str]]:
    """(kind, object, table) for every audited row this flush creates, changes or deletes."""
    found: list[tuple[str, Any, str]] = []
    for kind, objects in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for obj in objects:
            table = getattr(obj, "__tablename__", "")
            if table and table not in NOT_AUDITED and (kind != "update" or session.is_modified(obj)):
                found.append((kind, obj, table))
    return found


def _primary(touched: list[tuple[str, Any, str]], resource: str) -> tuple[str, Any, str]:
    return next((t for t in touched if SINGULAR.get(t[2]) == resource), touched[0])


@event.listens_for(Session, "before_flush")
def _record_writes(session: Session, _context: Any, _instances: Any) -> None:
    scope = audit_scope.get()
    if scope is None:
        return
    touched = _touched(session)
    if not touched:
        return
    kind, obj, table = _primary(touched, scope.resource)
    changes = _changes(obj, kind)
    if scope.record is None:
        scope.record = AuditRecord(
            workspace_id=getattr(obj, "workspace_id", None) or scope.workspace_id, actor_user_id=scope.user_id,
            actor_token_id=scope.token_id, action=scope.action, resource_type=SINGULAR.get(table, table),
            resource_id=_identity(obj),
            changes=changes, request_id=scope.request_id, at=now(),
        )  # fmt: skip
    elif scope.record.resource_type != scope.resource and SINGULAR.get(table) == scope.resource:
        # an earlier transaction only prepared the way (e.g. the default environment): this is the real write
        scope.record.resource_type, scope.record.resource_id = scope.resource, _identity(obj)
        scope.record.changes = changes
    else:  # a later transaction of the same request: one entry per request, its changes merged
        scope.record.changes = {**scope.record.changes, **changes}
    session.add(scope.record)


def _identity(obj: Any) -> str | None:
    return str(getattr(obj, "id", None) or getattr(obj, "user_id", "") or "") or None
