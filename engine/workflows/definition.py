"""What a workflow is: typed input, steps (a DAG), an output, budgets; and what a step's run leaves behind.

Steps arrive as JSON objects and are checked one by one (``engine.workflows.validation``): a step may name a
reusable step definition (``uses``) whose fields it starts from, then decodes into one of the typed step kinds
below (tag ``kind``). Strings in ``query``, ``input``, ``variables``, ``arguments``, ``payload`` and ``template``
are templates (``engine.workflows.templates``); ``expression`` is an expression (``engine.workflows.expressions``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from engine.types import TokenUsage, VersionNumber

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z"
StepId = Annotated[str, Meta(pattern=STEP_ID)]
STEP_KINDS = ("prompt", "agent", "search", "tool", "condition", "transform", "emit")
EVENT_TYPE = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}\Z"
MAX_STEPS = 100
StepStatus = Literal["succeeded", "failed", "skipped"]


class StepBase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    id: StepId
    name: str = ""
    after: list[StepId] = []  # runs after these (references to steps.X add X on their own)
    uses: str | None = None  # the reusable step definition it was made from (for usage counts)
    on_error: Literal["fail", "continue"] = "fail"  # continue: a failure leaves output null and the run goes on
    timeout_s: Annotated[float, Meta(gt=0, le=3600)] | None = None

    @property
    def kind(self) -> str:
        """The step's kind (its tag on the wire)."""
        tag = type(self).__struct_config__.tag
        assert isinstance(tag, str)
        return tag


class PromptStep(StepBase, frozen=True, kw_only=True, tag="prompt"):
    """Render a prompt's version (pinned, else live in the run's environment) and call its model once."""

    prompt: Annotated[str, Meta(min_length=1, max_length=128)]  # the prompt's key
    version: VersionNumber | None = None
    variables: dict[str, Any] = {}  # templates, checked against the prompt's declared variables
    input: Any = None  # a template: the user message appended after the prompt's own messages


class AgentStep(StepBase, frozen=True, kw_only=True, tag="agent"):
    agent_id: Annotated[str, Meta(min_length=1, max_length=64)]
    input: Any  # a template: the user message
    variables: dict[str, Any] = {}  # values for the agent's prompt (if it has one)


class SearchStep(StepBase, frozen=True, kw_only=True, tag="search"):
    query: Any  # a template
    top_k: Annotated[int, Meta(ge=1, le=100)] = 5
    mode: Literal["dense", "sparse", "hybrid"] = "hybrid"
    kb_ids: list[str] | None = None  # default: every knowledge base the run's caller may read
    tags: list[str] | None = None
    file_types: list[str] | None = None
    metadata: dict[str, Any] | None = None


class ToolStep(StepBase, frozen=True, kw_only=True, tag="tool"):
    tool: Annotated[str, Meta(min_length=1, max_length=128)]
    arguments: dict[str, Any] = {}  # templates, checked against the tool's parameter schema


class ConditionStep(StepBase, frozen=True, kw_only=True, tag="condition"):
    """Branch: the steps in ``then`` run when the expression is truthy, those in ``else`` when it is not."""

    expression: Annotated[str, Meta(min_length=1, max_length=2000)]
    then: list[StepId] = []
    else_: list[StepId] = msgspec.field(default_factory=list, name="else")


class TransformStep(StepBase, frozen=True, kw_only=True, tag="transform"):
    template: Any  # any JSON with {{ references }}: the step's output


class EmitStep(StepBase, frozen=True, kw_only=True, tag="emit"):
    event: Annotated[str, Meta(pattern=EVENT_TYPE)]  # the workspace event's type
    payload: Any = {}  # a template; must render to an object


Step = PromptStep | AgentStep | SearchStep | ToolStep | ConditionStep | TransformStep | EmitStep
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "prompt": ("variables", "input"), "agent": ("input", "variables"), "search": ("query",), "tool": ("arguments",),
    "condition": (), "transform": ("template",), "emit": ("payload",),
}  # fmt: skip


class Budgets(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_steps: Annotated[int, Meta(ge=1, le=500)] = 50  # steps run (skipped ones do not count)
    max_tokens: Annotated[int, Meta(ge=1, le=10_000_000)] | None = None  # over every model call of the run
    timeout_s: Annotated[float, Meta(gt=0, le=86_400)] = 600.0  # wall time while a server runs it


class WorkflowSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A workflow definition as saved (one per version)."""

    steps: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=MAX_STEPS)]
    input_schema: dict[str, Any] | None = None  # JSON Schema of the run's input (an object)
    output: Any = None  # a template of the run's output (default: the outputs of the last steps, by id)
    output_schema: dict[str, Any] | None = None  # JSON Schema the output must match
    budgets: Budgets = Budgets()


class StepRecord(msgspec.Struct, kw_only=True):
    """One step's run: what it got, what it gave, when, and how it ended (stored as it finishes)."""

    step_id: str
    kind: str
    status: StepStatus
    input: Any = None
    output: Any = None
    error: str | None = None
    summary: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    duration_ms: float = 0.0
    usage: TokenUsage = TokenUsage()


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing wrong with a definition: the step (``None``: the workflow), its field, and what is wrong."""

    step: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"step {self.step!r} field {self.field!r}" if self.step else f"field {self.field!r}"
        return f"{where}: {self.message}"
