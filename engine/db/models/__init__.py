"""ORM tables. The files, metadata and this database are the truth; Qdrant holds derived data.

One module per domain; importing this package registers every table on ``Base.metadata`` (Alembic's env and
``create_all`` rely on that), and every name stays importable from ``engine.db.models``."""

from __future__ import annotations

from engine.db.models.access import ApiToken, AuditRecord, Membership, TokenAudit, User, Workspace
from engine.db.models.base import Base, new_id, now
from engine.db.models.configuration import (
    Environment,
    McpServer,
    ModelConfig,
    Prompt,
    PromptDeployment,
    PromptVersion,
    Variable,
)
from engine.db.models.events import Automation, Subscription, SubscriptionDelivery, WorkspaceEventRow
from engine.db.models.knowledge import Evaluation, File, GoldenSet, IndexSwitch, KbCollection, KnowledgeBase
from engine.db.models.runs import (
    Agent,
    CallbackDelivery,
    ChatMessage,
    ChatSession,
    Run,
    RunEventRow,
    Trigger,
    WebhookDelivery,
)
from engine.db.models.workflows import Workflow, WorkflowRun, WorkflowStepDef, WorkflowStepResult, WorkflowVersion

__all__ = [
    "Agent",
    "ApiToken",
    "AuditRecord",
    "Automation",
    "Base",
    "CallbackDelivery",
    "ChatMessage",
    "ChatSession",
    "Environment",
    "Evaluation",
    "File",
    "GoldenSet",
    "IndexSwitch",
    "KbCollection",
    "KnowledgeBase",
    "McpServer",
    "Membership",
    "ModelConfig",
    "Prompt",
    "PromptDeployment",
    "PromptVersion",
    "Run",
    "RunEventRow",
    "Subscription",
    "SubscriptionDelivery",
    "TokenAudit",
    "Trigger",
    "User",
    "Variable",
    "WebhookDelivery",
    "Workflow",
    "WorkflowRun",
    "WorkflowStepDef",
    "WorkflowStepResult",
    "WorkflowVersion",
    "Workspace",
    "WorkspaceEventRow",
    "new_id",
    "now",
]
