"""Save-time type checks of a workflow's steps against what they reference.

Every template and expression is typed over the run's ``input`` (its JSON Schema) and the outputs of earlier steps
(each kind's output shape below); a path that leads nowhere, a comparison between different types and a value
of the wrong type for where it goes (a prompt's declared variable, a tool's parameter, a search query) is a
problem naming the step and the field. The ``Catalog`` says what the workspace has (prompts and their variables,
agents, tools, knowledge bases): the service reads it from the database, so this module stays pure.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.workflows.definition import AgentStep, EmitStep, PromptStep, SearchStep, Step, ToolStep
from engine.workflows.expressions import Path
from engine.workflows.templates import Template, template_type
from engine.workflows.types import (
    ANY,
    BOOLEAN,
    INTEGER,
    NULL,
    NUMBER,
    STRING,
    VType,
    array,
    assignable,
    from_schema,
    nullable,
    obj,
)  # fmt: skip

HIT = obj({
    "text": STRING, "score": NUMBER, "chunk_id": STRING, "file_id": STRING, "file_name": STRING, "kb_id": STRING,
    "page": nullable(INTEGER), "tags": array(STRING),
})  # fmt: skip
OUTPUTS: dict[str, VType] = {
    "prompt": obj({"text": STRING, "data": ANY}),
    "agent": obj({"text": STRING}),
    "search": obj({"query": STRING, "count": INTEGER, "hits": array(HIT)}),
    "tool": obj({"content": STRING, "summary": STRING, "is_error": BOOLEAN}),
    "condition": obj({"value": BOOLEAN}),
    "emit": obj({"event_id": STRING, "event": STRING}),
}


@dataclass(frozen=True)
class VarShape:
    type: str  # string | number | integer | boolean | array | object
    required: bool


@dataclass(frozen=True)
class PromptShape:
    variables: Mapping[str, VarShape]
    output_format: str = "text"


@dataclass(frozen=True)
class Catalog:
    """What the workspace holds, for the names a definition uses (missing: unknown)."""

    prompts: Mapping[tuple[str, int | None], PromptShape | str] = field(default_factory=dict)  # str: why unusable
    agents: Collection[str] = ()
    tools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> JSON Schema of its arguments
    kb_ids: Collection[str] = ()
    step_defs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # id -> {"kind": …, fields}
    events: bool = True  # workspace events can be emitted


Report = Callable[[str, str], None]  # (field, message)


def walk(start: VType, parts: tuple[str | int, ...], prefix: str, problems: list[str]) -> VType:
    """The type at ``prefix`` + ``parts``; a field or index the type cannot have is a problem (then ``any``)."""
    current = start
    for part in parts:
        if current.kind == "any":
            return ANY
        if isinstance(part, int):
            if current.kind != "array":
                problems.append(f"{prefix} is {current.describe()}: it has no item [{part}]")
                return ANY
            current, prefix = current.items or ANY, f"{prefix}[{part}]"
            continue
        if current.kind != "object":
            problems.append(f"{prefix} is {current.describe()}: it has no field {part!r}")
            return ANY
        if part in current.fields:
            current, prefix = current.fields[part], f"{prefix}.{part}"
        elif current.closed:
            known = ", ".join(current.fields) or "none"
            problems.append(f"{prefix} has no field {part!r} (its fields: {known})")
            return ANY
        else:
            return ANY
    return current


class Typer:
    """Types paths for one workflow: ``input`` from its schema, ``steps.X`` from the steps typed so far."""

    def __init__(self, input_type: VType, step_ids: Collection[str]) -> None:
        self.input_type = input_type
        self.step_ids = step_ids
        self.outputs: dict[str, VType] = {}

    def typer(self, problems: list[str]) -> Callable[[Path], VType]:
        def type_of(path: Path) -> VType:
            if path.root == "input":
                return walk(self.input_type, path.parts, "input", problems)
            if not path.parts:
                return ANY
            step_id = path.parts[0]
            if not isinstance(step_id, str) or step_id not in self.step_ids:
                problems.append(f"{path.text}: unknown step {step_id!r}")
                return ANY
            shape = obj({"output": self.outputs.get(step_id, ANY), "status": STRING, "error": nullable(STRING)})
            return walk(shape, path.parts[1:], f"steps.{step_id}", problems)

        return type_of


def _expect(report: Report, where: str, got: VType, wanted: str, what: str) -> None:
    if not assignable(got, wanted):
        report(where, f"type mismatch: {what} must be {wanted}, the template gives {got.describe()}")


def check_step(
    step: Step, templates: Mapping[str, Template], typer: Typer, catalog: Catalog | None, report: Report
) -> VType:
    """Type-check one step (catalog: ``None`` skips what needs the workspace); returns its output type."""

    def typed(name: str, template: Template) -> VType:
        problems: list[str] = []
        result = template_type(template, typer.typer(problems), problems)
        for problem in problems:
            report(name, problem)
        return result

    types = {name: typed(name, template) for name, template in templates.items()}
    check = _CHECKS.get(step.kind)
    if check is not None:
        check(step, types, catalog, report)
    if step.kind == "transform" and "template" in types:
        return types["template"]
    return OUTPUTS.get(step.kind, ANY)


def _check_agent(step: Any, types: Mapping[str, VType], catalog: Catalog | None, report: Report) -> None:
    assert isinstance(step, AgentStep)
    _expect(report, "input", types.get("input", NULL), "string", "an agent's input")
    if catalog is not None and step.agent_id not in catalog.agents:
        report("agent_id", f"unknown agent {step.agent_id!r} (no agent of this workspace has that id)")


def _check_search(step: Any, types: Mapping[str, VType], catalog: Catalog | None, report: Report) -> None:
    assert isinstance(step, SearchStep)
    _expect(report, "query", types.get("query", NULL), "string", "the search query")
    if catalog is not None:
        for kb in step.kb_ids or ():
            if kb not in catalog.kb_ids:
                report("kb_ids", f"unknown knowledge base {kb!r}")


def _check_emit(step: Any, types: Mapping[str, VType], catalog: Catalog | None, report: Report) -> None:
    assert isinstance(step, EmitStep)
    payload = types.get("payload", NULL)  # no template: the payload was null
    if payload.kind not in ("object", "any"):
        report("payload", "type mismatch: an event's payload must be an object, the template gives "
                          f"{payload.describe()}")  # fmt: skip
    if catalog is not None and not catalog.events:
        report("event", "workspace events are not available on this server")


def _sub(types: Mapping[str, VType], prefix: str) -> dict[str, VType]:
    return {key.split(".", 1)[1]: t for key, t in types.items() if key.startswith(prefix + ".")}


def _check_prompt(step: Any, types: Mapping[str, VType], catalog: Catalog | None, report: Report) -> None:
    assert isinstance(step, PromptStep)
    if "input" in types:
        _expect(report, "input", types["input"], "string", "the prompt's input")
    if catalog is None:
        return
    given = _sub(types, "variables")
    shape = catalog.prompts.get((step.prompt, step.version))
    if shape is None or isinstance(shape, str):
        report("prompt" if shape is None or step.version is None else "version",
               shape or f"unknown prompt {step.prompt!r} (no prompt of this workspace has that key)")  # fmt: skip
        return
    for name, got in given.items():
        declared = shape.variables.get(name)
        if declared is None:
            known = ", ".join(shape.variables) or "none"
            report(f"variables.{name}", f"prompt {step.prompt!r} declares no variable {name!r} (it declares: {known})")
        elif not assignable(got, declared.type):
            report(f"variables.{name}", f"type mismatch: variable {name!r} of prompt {step.prompt!r} is "
                                        f"{declared.type}, the template gives {got.describe()}")  # fmt: skip
    missing = [n for n, v in shape.variables.items() if v.required and n not in given]
    for name in missing:
        report("variables", f"prompt {step.prompt!r} needs the variable {name!r} ({shape.variables[name].type})")


def _check_tool(step: Any, types: Mapping[str, VType], catalog: Catalog | None, report: Report) -> None:
    assert isinstance(step, ToolStep)
    if catalog is None:
        return
    given = _sub(types, "arguments")
    schema = catalog.tools.get(step.tool)
    if schema is None:
        report("tool", f"unknown tool {step.tool!r} (there are: {', '.join(sorted(catalog.tools)) or 'none'})")
        return
    params = from_schema(schema)
    for name, got in given.items():
        declared = params.fields.get(name)
        if declared is None:
            if params.closed:
                report(f"arguments.{name}", f"tool {step.tool!r} takes no argument {name!r}")
        elif not assignable(got, declared.kind):
            report(f"arguments.{name}", f"type mismatch: argument {name!r} of tool {step.tool!r} is "
                                        f"{declared.describe()}, the template gives {got.describe()}")  # fmt: skip
    for name in schema.get("required", ()):
        if name not in given:
            report("arguments", f"tool {step.tool!r} needs the argument {name!r}")


_CHECKS: dict[str, Callable[[Any, Mapping[str, VType], Catalog | None, Report], None]] = {
    "prompt": _check_prompt, "agent": _check_agent, "search": _check_search, "tool": _check_tool, "emit": _check_emit,
}  # fmt: skip
