"""Where Ragline's own events come from: runs (started, finished), ingest (file ready, failed) and audited writes
(a prompt published, a token revoked …). Each hook queues its event (``EventService.emit_nowait``) after the
work it reports is committed and returns at once: a hot path never waits for the event log, and a failed event
write is only logged.

Chat runs emit nothing: a member's conversations are private to them (and admins), while the event log is
read by every member of the workspace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from api.services.events import EventService
from engine.db.audit import audit_scope
from engine.events import RunEvent
from engine.runs import FinishedHook, RunRecord, RunRequest

log = logging.getLogger("ragline.events")

MAX_OUTPUT = 4000  # characters of a run's output in run.finished (the whole output is at /executions/{id})
MAX_CHANGED = 2000  # characters of one changed value in an audited write's event
PRIVATE_KINDS = frozenset({"chat"})

# audited actions (api.audit.action_for) -> the event Ragline emits once such a write succeeded
WRITE_EVENTS = {
    "prompt.publish": "prompt.published", "prompt.rollback": "prompt.rolled_back",
    "token.revoke": "token.revoked", "token.logout": "token.revoked", "token.delete": "token.deleted",
    "token.regenerate": "token.regenerated",
    "agent.create": "agent.created", "agent.update": "agent.updated", "agent.delete": "agent.deleted",
    "knowledge_base.create": "knowledge_base.created", "knowledge_base.delete": "knowledge_base.deleted",
    "file.delete": "file.deleted", "member.delete": "member.removed", "user.delete": "user.deleted",
}  # fmt: skip


def run_source(run_id: str) -> str:
    return f"run:{run_id}"


class RunEvents:
    """``run.started`` and ``run.finished`` for every run but chats (``RunService`` calls these)."""

    def __init__(self, events: EventService) -> None:
        self.events = events

    def started(self, request: RunRequest, run_id: str) -> None:
        if request.kind in PRIVATE_KINDS:
            return
        payload = {
            "run_id": run_id, "kind": request.kind, "agent_id": request.agent_id, "trigger_id": request.trigger_id,
            "event_id": request.event_id, "model": request.spec.model,
        }  # fmt: skip
        self.events.emit_nowait(
            request.workspace_id, "run.started", payload, source=run_source(run_id), depth=request.event_depth,
            run_id=run_id,
        )  # fmt: skip

    def hooks(self, request: RunRequest) -> list[FinishedHook]:
        return [] if request.kind in PRIVATE_KINDS else [self.finished]

    async def finished(self, record: RunRecord, events: Sequence[RunEvent]) -> None:
        """A finished hook: runs after the run's record is stored."""
        output = record.output[:MAX_OUTPUT] if record.output is not None else None
        payload = {
            "run_id": record.id, "kind": record.kind, "status": record.status, "agent_id": record.agent_id,
            "trigger_id": record.trigger_id, "event_id": record.event_id, "output": output, "error": record.error,
            "error_code": record.error_code, "latency_ms": record.latency_ms,
            "token_usage": {
                "prompt": record.prompt_tokens, "completion": record.completion_tokens, "total": record.total_tokens,
            },
        }  # fmt: skip
        self.events.emit_nowait(
            record.workspace_id, "run.finished", payload, source=run_source(record.id), depth=record.event_depth,
            run_id=record.id,
        )  # fmt: skip


def file_listener(events: EventService) -> Any:
    """The ingest worker's listener: ``file.ready`` and ``file.failed`` once a file's status is final."""

    def told(workspace_id: str, event_type: str, payload: dict[str, Any]) -> None:
        events.emit_nowait(workspace_id, event_type, payload, source="system")

    return told


async def emit_after_write(message: Any, scope: Any) -> None:
    """``before_send``: a successful audited write (its response is starting) emits its system event, if it has
    one (``WRITE_EVENTS``). The write is committed by then; the response waits for nothing."""
    if message.get("type") != "http.response.start" or not 200 <= int(message.get("status", 500)) < 300:
        return
    current = audit_scope.get()
    record = current.record if current is not None else None
    event_type = WRITE_EVENTS.get(current.action) if current is not None else None
    if record is None or event_type is None:
        return
    try:
        services = scope["app"].state.services
    except (KeyError, AttributeError):
        return
    changed = {
        name: value["after"]
        for name, value in (record.changes or {}).items()
        if isinstance(value, dict) and value.get("after") is not None and len(str(value["after"])) <= MAX_CHANGED
    }
    payload = {
        "id": record.resource_id, "resource_type": record.resource_type, "action": record.action,
        "user_id": record.actor_user_id, "changed": changed,
    }  # fmt: skip
    services.events.emit_nowait(record.workspace_id, event_type, payload, source="system")
