"""Check a workflow definition and compile it into a ``Plan`` the executor runs.

Everything wrong is collected before anything is refused, so one answer lists every problem (``Problem``: the
step, its field, what is wrong): steps that do not decode, unknown steps in ``after``/``then``/``else`` or in
references, malformed expressions and templates, cycles (with the path that closes them), a step gated by two
conditions, type mismatches (``engine.workflows.checks``), an input or output schema that is not JSON Schema.
A step depends on the steps it names in ``after``, the steps its templates read (``steps.X``) and the condition
that gates it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import msgspec

from engine.errors import InvalidInput
from engine.types import MAX_VERSION
from engine.workflows.checks import Catalog, Typer, check_step
from engine.workflows.definition import TEMPLATE_FIELDS, ConditionStep, Problem, Step, WorkflowSpec
from engine.workflows.expressions import Expr, ExpressionError, Path, parse, paths
from engine.workflows.inference import infer
from engine.workflows.templates import Template, compile_template, template_paths, template_type
from engine.workflows.types import ANY, VType, from_schema

_STEP_TYPE: Any = Step


class DefinitionError(InvalidInput):
    """A definition with problems (422): the message lists every one; ``problems`` holds them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"the workflow has {count} problem{'s' if count > 1 else ''}: "
        super().__init__((head + "; ".join(str(p) for p in self.problems))[:8000])


@dataclass(frozen=True)
class CompiledStep:
    step: Step
    deps: frozenset[str]
    templates: Mapping[str, Template]  # field (``variables.topic`` for one entry of a mapping) -> template
    expression: Expr | None = None  # a condition's
    gate: tuple[str, bool] | None = None  # (condition step, the branch it runs on)
    why: Mapping[str, str] = field(default_factory=dict)  # dependency -> the field that makes it one


@dataclass(frozen=True)
class Plan:
    spec: WorkflowSpec
    steps: Mapping[str, CompiledStep]  # in a topological order
    output: Template | None
    sinks: tuple[str, ...]  # steps nothing depends on (the default output)
    step_refs: tuple[str, ...]  # reusable step definitions used
    resolved: tuple[dict[str, Any], ...]  # the steps as run (``uses`` merged in): what a run stores


def resolve_uses(
    raw_steps: Sequence[Mapping[str, Any]], step_defs: Mapping[str, Mapping[str, Any]] | None
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Steps with their reusable definition's fields under their own (``None``: already merged, a stored run)."""
    merged: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for index, raw in enumerate(raw_steps):
        step = dict(raw)
        sid = str(step.get("id", f"#{index + 1}"))
        uses = step.get("uses")
        if uses is not None and step_defs is not None:
            base = step_defs.get(uses) if isinstance(uses, str) else None
            if base is None:
                problems.append(Problem(step=sid, field="uses", message=f"unknown workflow step {uses!r}"))
            elif "kind" in step and step["kind"] != base.get("kind"):
                problems.append(Problem(step=sid, field="kind", message=f"{uses!r} is a {base.get('kind')} step, "
                                                                        f"not {step['kind']}"))  # fmt: skip
            else:
                step = {**base, **step}
        merged.append(step)
    return merged, problems


def wanted(steps: Sequence[Mapping[str, Any]]) -> dict[str, set[Any]]:
    """The names a definition's steps use, for the service to look up: uses, prompts, agents, tools, kb_ids."""
    out: dict[str, set[Any]] = {"uses": set(), "prompts": set(), "agents": set(), "tools": set(), "kb_ids": set()}
    for step in steps:
        if isinstance(step.get("uses"), str):
            out["uses"].add(step["uses"])
        kind = step.get("kind")
        if kind == "prompt" and isinstance(step.get("prompt"), str):
            version = step.get("version")
            # a version no prompt can have is looked up as none: the step's own check refuses it, not the database
            valid = isinstance(version, int) and 1 <= version <= MAX_VERSION
            out["prompts"].add((step["prompt"], version if valid else None))
        elif kind == "agent" and isinstance(step.get("agent_id"), str):
            out["agents"].add(step["agent_id"])
        elif kind == "tool" and isinstance(step.get("tool"), str):
            out["tools"].add(step["tool"])
        elif kind == "search" and isinstance(step.get("kb_ids"), list):
            out["kb_ids"] |= {kb for kb in step["kb_ids"] if isinstance(kb, str)}
    return out


def _decode(raw: dict[str, Any], sid: str, problems: list[Problem]) -> Step | None:
    try:
        step: Step = msgspec.convert(raw, _STEP_TYPE)
        return step
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rsplit("at `$.", 1)[1].rstrip("`").split("[")[0].split(".")[0] if "at `$." in text else "kind"
        problems.append(Problem(step=sid, field=field, message=text.split(" - at `")[0]))
        return None


def _templates(step: Step, problems: list[Problem]) -> dict[str, Template]:
    found: dict[str, Template] = {}
    for name in TEMPLATE_FIELDS[step.kind]:
        value = getattr(step, name)
        errors: list[str] = []
        if name in ("variables", "arguments"):
            for key, item in value.items():
                found[f"{name}.{key}"] = compile_template(item, errors)
        elif value is not None:
            found[name] = compile_template(value, errors)
        problems += [Problem(step=step.id, field=name, message=e) for e in errors]
    return found


def _references(templates: Mapping[str, Template], expression: Expr | None) -> Iterator[tuple[str, Path]]:
    for name, template in templates.items():
        for path in template_paths(template):
            yield name, path
    if expression is not None:
        for path in paths(expression):
            yield "expression", path


def _cycle(deps: Mapping[str, Mapping[str, str]], members: set[str]) -> list[str]:
    """One cycle among ``members`` (each has a dependency among them), as a closed path, in definition order."""
    start = next(sid for sid in deps if sid in members)
    path, seen = [start], {start: 0}
    while True:
        nxt = next(sid for sid in deps if sid in members and sid in deps[path[-1]])
        if nxt in seen:
            return [*path[seen[nxt] :], nxt]
        seen[nxt] = len(path)
        path.append(nxt)


def _order(deps: Mapping[str, Mapping[str, str]], problems: list[Problem]) -> list[str]:
    """A topological order (Kahn); each cycle among what remains is a problem naming the fields that close it."""
    remaining = {sid: set(d) for sid, d in deps.items()}
    order: list[str] = []
    while True:
        ready = [sid for sid, d in remaining.items() if not d]
        if not ready:
            break
        for sid in ready:
            order.append(sid)
            del remaining[sid]
        for d in remaining.values():
            d.difference_update(ready)
    members = set(remaining)
    while True:
        # what only waits on a cycle is not in one: drop it until every member depends on another member
        kept = {m for m in members if remaining[m] & members}
        if kept == members:
            break
        members = kept
    while members:
        cycle = _cycle(deps, members)
        needs = ", ".join(f"{a!r} needs {b!r} ({deps[a][b]})" for a, b in itertools.pairwise(cycle))
        problems.append(Problem(step=cycle[0], field=deps[cycle[0]][cycle[1]],
                                message=f"the steps form a cycle: {needs}"))  # fmt: skip
        members -= set(cycle)
        while True:
            kept = {m for m in members if remaining[m] & members}
            if kept == members:
                break
            members = kept
    return order


def _schema_problems(spec: WorkflowSpec) -> list[Problem]:
    problems: list[Problem] = []
    for name in ("input_schema", "output_schema"):
        schema = getattr(spec, name)
        if schema is None:
            continue
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(Problem(step=None, field=name, message=f"not a valid JSON Schema: {exc.message}"))
    if spec.input_schema is not None and spec.input_schema.get("type", "object") != "object":
        problems.append(Problem(step=None, field="input_schema", message="a workflow's input is an object"))
    return problems


def compile_workflow(spec: WorkflowSpec, catalog: Catalog | None) -> Plan:
    """Check ``spec`` and compile it. ``catalog`` ``None``: steps are already resolved and the workspace is not
    consulted (a stored run resuming). Raises ``DefinitionError`` listing every problem."""
    resolved, problems = resolve_uses(spec.steps, catalog.step_defs if catalog is not None else None)
    problems += _schema_problems(spec)
    steps: dict[str, Step] = {}
    for index, raw in enumerate(resolved):
        sid = str(raw.get("id", f"#{index + 1}"))
        step = _decode(raw, sid, problems)
        if step is not None and step.id in steps:
            problems.append(Problem(step=sid, field="id", message="another step has this id"))
        elif step is not None:
            steps[step.id] = step
    compiled, deps = _structure(steps, problems)
    order = _order(deps, problems)
    output_problems: list[str] = []
    output = compile_template(spec.output, output_problems) if spec.output is not None else None
    problems += [Problem(step=None, field="output", message=m) for m in output_problems]
    # types over the steps outside cycles (their outputs are known); a problem found twice is listed once
    _type_check(spec, compiled, order, output, catalog, problems)
    if problems:
        raise DefinitionError(list(dict.fromkeys(problems)))
    needed = {d for c in compiled.values() for d in c.deps}
    return Plan(
        spec=spec, steps={sid: compiled[sid] for sid in order}, output=output,
        sinks=tuple(sid for sid in order if sid not in needed),
        step_refs=tuple(sorted({s.uses for s in steps.values() if s.uses})), resolved=tuple(resolved),
    )  # fmt: skip


def _gates(steps: Mapping[str, Step], problems: list[Problem]) -> dict[str, tuple[str, bool]]:
    """Which condition (and branch) gates each step named in a ``then`` or ``else``."""
    gates: dict[str, tuple[str, bool]] = {}
    for step in steps.values():
        if not isinstance(step, ConditionStep):
            continue
        for branch, targets in ((True, step.then), (False, step.else_)):
            for target in targets:
                message = None
                if target == step.id:
                    message = "a condition cannot gate itself"
                elif target not in steps:
                    message = f"unknown step {target!r}"
                elif target in gates:
                    message = f"step {target!r} is already gated by condition {gates[target][0]!r}"
                else:
                    gates[target] = (step.id, branch)
                if message is not None:
                    problems.append(Problem(step=step.id, field="then" if branch else "else", message=message))
    return gates


def _compile_step(
    step: Step, steps: Mapping[str, Step], gate: tuple[str, bool] | None, problems: list[Problem]
) -> CompiledStep:
    templates = _templates(step, problems)
    expression = None
    if isinstance(step, ConditionStep):
        try:
            expression = parse(step.expression)
        except ExpressionError as exc:
            problems.append(Problem(step=step.id, field="expression", message=exc.message))
    needs: dict[str, str] = {gate[0]: "gated by its then/else"} if gate is not None else {}
    for name in step.after:
        if name in steps:
            needs.setdefault(name, "after")
        else:
            problems.append(Problem(step=step.id, field="after", message=f"unknown step {name!r}"))
    for name, path in _references(templates, expression):
        target = path.parts[0] if path.root == "steps" and path.parts else None
        if path.root != "steps":
            continue
        if isinstance(target, str) and target in steps:
            needs.setdefault(target, name)
        else:
            message = f"{path.text}: unknown step {target!r}" if target is not None else "steps needs a step id"
            problems.append(Problem(step=step.id, field=name, message=message))
    return CompiledStep(step=step, deps=frozenset(needs), templates=templates, expression=expression, gate=gate,
                        why=needs)


def _structure(
    steps: Mapping[str, Step], problems: list[Problem]
) -> tuple[dict[str, CompiledStep], dict[str, dict[str, str]]]:
    gates = _gates(steps, problems)
    compiled = {sid: _compile_step(step, steps, gates.get(sid), problems) for sid, step in steps.items()}
    return compiled, {sid: dict(c.why) for sid, c in compiled.items()}


def _type_check(
    spec: WorkflowSpec, compiled: Mapping[str, CompiledStep], order: Sequence[str], output: Template | None,
    catalog: Catalog | None, problems: list[Problem],
) -> None:  # fmt: skip
    input_type: VType = from_schema(spec.input_schema) if spec.input_schema is not None else ANY
    typer = Typer(input_type, compiled.keys())
    for sid in order:
        item = compiled[sid]
        found_here: list[tuple[str, str]] = []
        typer.outputs[sid] = check_step(item.step, item.templates, typer, catalog,
                                        lambda field, message: found_here.append((field, message)))  # noqa: B023
        problems += [Problem(step=sid, field=field, message=message) for field, message in found_here]
        if item.expression is not None:
            found: list[str] = []
            infer(item.expression, typer.typer(found), found)
            problems += [Problem(step=sid, field="expression", message=m) for m in found]
    if output is not None:
        found = []
        template_type(output, typer.typer(found), found)
        problems += [Problem(step=None, field="output", message=m) for m in found]


RESERVED_FIELDS = ("id", "kind", "after", "uses")


def check_reusable(kind: str, fields: Mapping[str, Any]) -> list[Problem]:
    """The problems of a reusable step definition on its own: its fields decode as a ``kind`` step and its
    templates and expression parse (what it references is checked in each workflow that uses it)."""
    problems = [Problem(step=None, field=name, message="set by the workflow step that uses it, not here")
                for name in RESERVED_FIELDS if name in fields]  # fmt: skip
    step = _decode({**fields, "id": "step", "kind": kind}, "step", problems)
    if step is not None:
        _templates(step, problems)
        if isinstance(step, ConditionStep):
            try:
                parse(step.expression)
            except ExpressionError as exc:
                problems.append(Problem(step="step", field="expression", message=exc.message))
    return [Problem(step=None, field=p.field, message=p.message) for p in problems]
