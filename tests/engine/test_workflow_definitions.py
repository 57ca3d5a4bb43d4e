"""Workflow definitions: the safe expression language, templates and the save-time checks (every problem listed)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine.workflows import Catalog, DefinitionError, PromptShape, VarShape, WorkflowSpec, compile_workflow
from engine.workflows.expressions import ExpressionError, evaluate, parse
from engine.workflows.templates import compile_template, render
from engine.workflows.validation import check_reusable

SCOPE = {
    "input": {"q": "leave", "n": 3, "tags": ["hr", "policy"], "flag": True},
    "steps": {"search": {"output": {"count": 2, "hits": [{"text": "27 days"}, {"text": "18 weeks"}]},
                         "status": "succeeded"}},
}  # fmt: skip


@pytest.mark.parametrize(("text", "value"), [
    ("input.n > 2 and len(steps.search.output.hits) == 2", True),
    ("not input.flag or input.n >= 10", False),
    ("'hr' in input.tags and 'x' not in input.tags", True),
    ("steps.search.output.hits[1].text", "18 weeks"),
    ("steps.search.output.hits[9].text", None),  # a path that leads nowhere is null
    ("coalesce(steps.missing.output, input.q)", "leave"),
    ("input.nothing or 'default'", "default"),
    ("upper(input.q) == \"LEAVE\"", True),
    ("input.n == 3.0 and input.flag != 1", True),  # true is not 1
    ("[1, 2, input.n]", [1, 2, 3]),
    ("-1.5e1 < 0", True),
])  # fmt: skip
def test_expressions_evaluate(text: str, value: Any) -> None:
    assert evaluate(parse(text), SCOPE) == value


@pytest.mark.parametrize(("text", "message"), [
    ("__import__('os')", "unknown function '__import__'"),
    ("input.__class__.__mro__", None),  # parses: only JSON keys are looked up, never attributes
    ("open", "unknown name 'open'"),
    ("input.n >", "ends early"),
    ("input.n = 3", "unexpected character '='"),
    ("len(input.q, 2)", "len() takes 1 argument"),
    ("(" * 40 + "1" + ")" * 40, "nests deeper"),
    ("x" * 2001, "longer than 2000"),
])  # fmt: skip
def test_expressions_are_never_python(text: str, message: str | None) -> None:
    if message is None:
        assert evaluate(parse(text), SCOPE) is None
        return
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_runtime_type_errors_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="cannot compare string with integer"):
        evaluate(parse("input.q > input.n"), SCOPE)
    with pytest.raises(ExpressionError, match=r"len\(\) needs"):
        evaluate(parse("len(input.n)"), SCOPE)


def test_templates_keep_types_and_interpolate_text() -> None:
    problems: list[str] = []
    template = compile_template({"hits": "{{ steps.search.output.hits }}", "line": "{{ input.q }} x{{ input.n }}",
                                 "list": ["{{ input.flag }}", 1]}, problems)  # fmt: skip
    assert problems == []
    assert render(template, SCOPE) == {"hits": SCOPE["steps"]["search"]["output"]["hits"], "line": "leave x3",
                                       "list": [True, 1]}  # fmt: skip
    compile_template({"a": "{{ input. }}"}, problems)
    assert problems and problems[0].startswith("a: {{input.}}")


CATALOG = Catalog(
    prompts={("answer", None): PromptShape(variables={"question": VarShape("string", True),
                                                      "passages": VarShape("array", True)})},
    agents={"agt_1"}, tools={"knowledge_search": {"type": "object", "properties": {"query": {"type": "string"}},
                                                  "required": ["query"], "additionalProperties": False}},
)  # fmt: skip
INPUT = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}


def spec(steps: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    return msgspec.convert({"input_schema": INPUT, "steps": steps, **extra}, WorkflowSpec)


def problems_of(steps: list[dict[str, Any]], **extra: Any) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        compile_workflow(spec(steps, **extra), CATALOG)
    assert str(caught.value.message).count(";") == len(caught.value.problems) - 1
    return [str(p) for p in caught.value.problems]


GOOD = [
    {"id": "search", "kind": "search", "query": "{{ input.question }}"},
    {"id": "check", "kind": "condition", "expression": "steps.search.output.count > 0", "then": ["answer"],
     "else": ["agent"]},
    {"id": "answer", "kind": "prompt", "prompt": "answer",
     "variables": {"question": "{{ input.question }}", "passages": "{{ steps.search.output.hits }}"}},
    {"id": "agent", "kind": "agent", "agent_id": "agt_1", "input": "{{ input.question }}"},
    {"id": "notify", "kind": "emit", "event": "answer.ready",
     "payload": {"text": "{{ coalesce(steps.answer.output.text, steps.agent.output.text) }}"}},
]  # fmt: skip


def test_a_sound_definition_compiles_into_a_dag() -> None:
    plan = compile_workflow(spec(GOOD), CATALOG)
    assert list(plan.steps) == ["search", "check", "answer", "agent", "notify"]
    assert plan.steps["answer"].deps == {"check", "search"} and plan.steps["answer"].gate == ("check", True)
    assert plan.sinks == ("notify",)


def test_a_cycle_is_refused_with_its_path() -> None:
    found = problems_of([
        {"id": "a", "kind": "transform", "template": "{{ steps.c.output }}"},
        {"id": "b", "kind": "transform", "template": "{{ steps.a.output }}"},
        {"id": "c", "kind": "transform", "template": "x", "after": ["b"]},
    ])  # fmt: skip
    assert found == ["step 'a' field 'template': the steps form a cycle: 'a' needs 'c' (template), 'c' needs 'b' "
                     "(after), 'b' needs 'a' (template)"]


def test_unknown_steps_are_refused_wherever_they_are_named() -> None:
    found = problems_of([
        {"id": "s", "kind": "search", "query": "{{ steps.serch.output.query }}", "after": ["nope"]},
        {"id": "c", "kind": "condition", "expression": "true", "then": ["ghost"]},
        {"id": "p", "kind": "prompt", "prompt": "missing", "version": 2},
        {"id": "g", "kind": "agent", "agent_id": "agt_gone", "input": "hi"},
        {"id": "t", "kind": "tool", "tool": "teleport"},
        {"id": "u", "uses": "wfs_nothing"},
    ])  # fmt: skip
    assert set(found) >= {
        "step 's' field 'after': unknown step 'nope'",
        "step 's' field 'query': steps.serch.output.query: unknown step 'serch'",
        "step 'c' field 'then': unknown step 'ghost'",
        "step 'p' field 'prompt': unknown prompt 'missing' (no prompt of this workspace has that key)",
        "step 'g' field 'agent_id': unknown agent 'agt_gone' (no agent of this workspace has that id)",
        "step 't' field 'tool': unknown tool 'teleport' (there are: knowledge_search)",
        "step 'u' field 'uses': unknown workflow step 'wfs_nothing'",
    }


def test_bad_expressions_are_refused_with_where_they_are() -> None:
    found = problems_of([
        {"id": "c", "kind": "condition", "expression": "input.question == "},
        {"id": "t", "kind": "transform", "template": {"a": ["{{ eval('1') }}"]}},
    ])  # fmt: skip
    assert found == [
        "step 'c' field 'expression': the expression ends early",
        "step 't' field 'template': a[0]: {{eval('1')}}: unknown function 'eval' (there are len, coalesce, lower, "
        "upper)",
    ]


def test_type_mismatches_are_refused() -> None:
    found = problems_of([
        {"id": "s", "kind": "search", "query": "{{ input.question }}"},
        {"id": "c", "kind": "condition", "expression": "steps.s.output.hits > 3 and steps.s.output.count == 'many'"},
        {"id": "p", "kind": "prompt", "prompt": "answer",
         "variables": {"question": "{{ steps.s.output.count }}", "passages": "{{ steps.s.output.hits }}"}},
        {"id": "q", "kind": "search", "query": "{{ steps.s.output.hits }}"},
        {"id": "x", "kind": "transform", "template": "{{ steps.s.output.hitz }} {{ input.questoin }}"},
        {"id": "k", "kind": "tool", "tool": "knowledge_search", "arguments": {"query": "{{ steps.s.output.count }}"}},
    ])  # fmt: skip
    assert found == [
        "step 'c' field 'expression': type mismatch: steps.s.output.hits (array of object) > 3 (integer): > compares "
        "numbers with numbers or strings with strings",
        "step 'c' field 'expression': type mismatch: steps.s.output.count (integer) == 'many' (string) compares "
        "different types, so it is always false",
        "step 'p' field 'variables.question': type mismatch: variable 'question' of prompt 'answer' is string, "
        "the template gives integer",
        "step 'q' field 'query': type mismatch: the search query must be string, the template gives array of object",
        "step 'x' field 'template': steps.s.output has no field 'hitz' (its fields: query, count, hits)",
        "step 'x' field 'template': input has no field 'questoin' (its fields: question)",
        "step 'k' field 'arguments.query': type mismatch: argument 'query' of tool 'knowledge_search' is string, "
        "the template gives integer",
    ]


def test_a_null_where_a_template_is_required_is_a_problem() -> None:
    """``null`` for an emit's payload, an agent's input or a search's query gave no template to type, and the check
    that wanted one raised (a 500 on every route that saves or validates a workflow; schemathesis found it once the
    document described the steps)."""
    assert problems_of([
        {"id": "e", "kind": "emit", "event": "answer.ready", "payload": None},
        {"id": "a", "kind": "agent", "agent_id": "agt_1", "input": None},
        {"id": "s", "kind": "search", "query": None},
    ]) == [
        "step 'e' field 'payload': type mismatch: an event's payload must be an object, the template gives null",
        "step 'a' field 'input': type mismatch: an agent's input must be string, the template gives null",
        "step 's' field 'query': type mismatch: the search query must be string, the template gives null",
    ]  # fmt: skip


def test_schemas_and_shapes_are_checked_together() -> None:
    found = problems_of([{"id": "s", "kind": "search", "query": 5, "top_k": 1000, "bogus": 1}],
                        output_schema={"type": "nonsense"})  # fmt: skip
    assert any(p.startswith("field 'output_schema': not a valid JSON Schema") for p in found)
    assert any(p.startswith("step 's' field 'top_k': Expected `int` <= 100") for p in found)


def test_reusable_steps_merge_under_the_workflow_step() -> None:
    catalog = Catalog(step_defs={"wfs_1": {"kind": "search", "query": "{{ input.question }}", "top_k": 3}})
    plan = compile_workflow(spec([{"id": "find", "uses": "wfs_1", "top_k": 7}]), catalog)
    step = plan.steps["find"].step
    assert (step.kind, step.top_k, step.uses) == ("search", 7, "wfs_1")  # type: ignore[attr-defined]
    assert plan.step_refs == ("wfs_1",)
    assert [str(p) for p in check_reusable("search", {"query": "{{ input.q ", "id": "x"})] == [
        "field 'id': set by the workflow step that uses it, not here",
    ]
    assert [str(p) for p in check_reusable("condition", {"expression": "1 +"})] == [
        "field 'expression': unexpected character '+' at 3"]
