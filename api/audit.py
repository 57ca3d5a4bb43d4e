"""What a write request is called in the audit log: ``<resource>.<verb>`` from its route.

``POST /api/v1/agents`` -> ``agent.create``; ``PATCH /api/v1/knowledge-bases/{kb_id}/files/{file_id}`` ->
``file.update``; ``POST /api/v1/tokens/{token_id}/revoke`` -> ``token.revoke``. ``engine.db.audit`` records
what the request changed under that name, in the same transaction.
"""

from __future__ import annotations

from typing import Any

from engine.db.audit import AuditScope, audit_scope

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
# collections in paths -> the resource name in the audit log
_RESOURCES = {
    "knowledge-bases": "knowledge_base", "files": "file", "agents": "agent", "triggers": "trigger", "tokens": "token",
    "workspaces": "workspace", "members": "member", "users": "user", "me": "user", "environments": "environment",
    "variables": "variable", "models": "model", "system-models": "model", "sessions": "chat_session",
    "prompts": "prompt", "workflows": "workflow", "automations": "automation", "subscriptions": "subscription",
    "golden-sets": "golden_set", "evaluations": "evaluation", "index-switches": "index_switch",
    "workflow-steps": "workflow_step",
    "events": "event",
}  # fmt: skip
_WHOLE = {"login": "token.login", "logout": "token.logout"}


def action_for(method: str, path_template: str) -> str:
    parts = [p for p in path_template.split("/") if p and p not in ("api", "v1")]
    if parts and parts[-1] in _WHOLE:
        return _WHOLE[parts[-1]]
    collections = [p for p in parts if p in _RESOURCES]
    resource = collections[-1] if collections else (parts[0] if parts else "api")
    last = parts[-1] if parts else ""
    verb = _VERBS.get(method, "write") if last == resource or last.startswith("{") else last.replace("-", "_")
    return f"{_RESOURCES.get(resource, resource.replace('-', '_'))}.{verb}"


def open_audit_scope(method: str, path_template: str, principal: Any, request_id: str | None) -> None:
    """Name this request's writes for the audit log (reads write nothing worth auditing)."""
    if method not in WRITE_METHODS:
        audit_scope.set(None)
        return
    audit_scope.set(AuditScope(
        workspace_id=principal.workspace_id, action=action_for(method, path_template), user_id=principal.user_id,
        token_id=principal.token_id, request_id=request_id,
    ))  # fmt: skip
