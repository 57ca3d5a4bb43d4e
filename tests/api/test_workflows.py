"""Workflows through the API against the scripted OpenAI-compatible server (litellm, real HTTP on loopback).

``search -> condition -> prompt | agent -> emit``: its SSE stream and its stored run list every step with its
input and output; the emitted event is in the workspace's event log and starts an automation whose run is
linked to it. Definitions are versioned and checked when saved (every problem listed); reusable steps show
where they are used and cannot break the workflows that use them.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, make_settings, open_api
from tests.api.test_chat_and_runs import parse_sse
from tests.helpers.openai_server import Reply, Server, serve

pytestmark = pytest.mark.slow
HANDBOOK = (b"Vacation. Every employee receives 27 days of paid vacation per year.\n\n"
            b"Parental leave. Parents are entitled to 18 weeks of fully paid parental leave.\n")  # fmt: skip
_names = itertools.count()


SLOW_CALLS: list[int] = []  # calls of the slow agent: the first one stalls (the server shuts down meanwhile)


def reply_for(body: dict[str, Any]) -> Reply:
    """The scripted model: which step calls it is read from the request itself."""
    text = "\n".join(str(m.get("content") or "") for m in body["messages"])
    if "You are the slow agent" in text:
        SLOW_CALLS.append(1)
        return Reply(text="stalled", stall_after_chunks=1) if len(SLOW_CALLS) == 1 else Reply(text="slow but done")
    if "PASSAGES:" in text:
        return Reply(text="You get 27 days of paid vacation.", usage=(40, 8))
    if "You are the fallback agent" in text:
        return Reply(text="Please ask HR.", usage=(20, 4))
    if "You log answers" in text:
        return Reply(text="Logged.", usage=(10, 2))
    return Reply(text="ok")


@dataclass
class World:
    api: Api
    model: Server
    settings: Any
    kb: str
    agent: str
    logger: str

    def calls(self, marker: str) -> int:
        return sum(marker in "\n".join(str(m.get("content") or "") for m in r["messages"]) for r in self.model.requests)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[World]:
    for model in serve(by_request=reply_for):
        settings = make_settings(tmp_path_factory.mktemp("workflows") / "data", model_api_base=model.base_url,
                                 model_api_key="sk-test", default_model="openai/scripted")  # fmt: skip
        with open_api(settings, embedder) as api:
            kb = api.create_kb("handbook")
            file_id = api.upload(kb, "handbook.txt", HANDBOOK).json()["data"]["id"]
            assert api.wait_ingested(kb, file_id)["status"] == "ready"
            prompt = api.request("POST", "/api/v1/prompts", json={
                "key": "answer", "messages": [
                    {"role": "system", "content": "Answer the question from the passages only."},
                    {"role": "user", "content": "QUESTION: {{ question }}\nPASSAGES:\n"
                                                "{% for p in passages %}- {{ p.text }}\n{% endfor %}"}],
                "variables": [{"name": "question", "type": "string"}, {"name": "passages", "type": "array"}]})
            assert prompt.status_code == 201, prompt.text
            assert api.request("POST", f"/api/v1/prompts/{prompt.json()['data']['id']}/publish",
                               json={"note": "v1"}).status_code == 201  # fmt: skip
            agent = api.request("POST", "/api/v1/agents", json={
                "name": "fallback", "model": "openai/scripted", "tools": [],
                "instructions": "You are the fallback agent."}).json()["data"]["id"]  # fmt: skip
            logger = api.request("POST", "/api/v1/agents", json={
                "name": "logger", "model": "openai/scripted", "tools": [],
                "instructions": "You log answers."}).json()["data"]["id"]  # fmt: skip
            yield World(api=api, model=model, settings=settings, kb=kb, agent=agent, logger=logger)


def definition(w: World, **extra: Any) -> dict[str, Any]:
    return {
        "input_schema": {"type": "object", "properties": {"question": {"type": "string"},
                                                          "use_agent": {"type": "boolean"}}, "required": ["question"]},
        "steps": [
            {"id": "search", "kind": "search", "query": "{{ input.question }}", "kb_ids": [w.kb], "top_k": 2},
            {"id": "check", "kind": "condition", "then": ["answer"], "else": ["agent"],
             "expression": "len(steps.search.output.hits) > 0 and not input.use_agent"},
            {"id": "answer", "kind": "prompt", "prompt": "answer",
             "variables": {"question": "{{ input.question }}", "passages": "{{ steps.search.output.hits }}"}},
            {"id": "agent", "kind": "agent", "agent_id": w.agent, "input": "{{ input.question }}"},
            {"id": "notify", "kind": "emit", "event": "answer.ready",
             "payload": {"question": "{{ input.question }}",
                         "text": "{{ coalesce(steps.answer.output.text, steps.agent.output.text) }}"}},
        ],
        "output": {"answer": "{{ coalesce(steps.answer.output.text, steps.agent.output.text) }}",
                   "event_id": "{{ steps.notify.output.event_id }}"},
        **extra,
    }  # fmt: skip


def create(w: World, body: dict[str, Any]) -> dict[str, Any]:
    created = w.api.request("POST", "/api/v1/workflows", json={"name": f"wf-{next(_names)}", "definition": body})
    assert created.status_code == 201, created.text
    return dict(created.json()["data"])


def wait_for(check: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_a_workflow_runs_end_to_end_with_a_per_step_trace_and_starts_an_automation(world: World) -> None:
    w = world
    workflow = create(w, definition(w))
    automation = w.api.request("POST", "/api/v1/automations", json={
        "name": f"log-{workflow['id']}", "event_types": ["answer.*"], "action": "agent", "agent_id": w.logger,
        "input_template": "Log: {{ input.payload.text }}"})  # fmt: skip
    assert automation.status_code == 201, automation.text
    before = w.calls("PASSAGES:")
    response = w.api.request("POST", f"/api/v1/workflows/{workflow['id']}/run/stream",
                             json={"input": {"question": "How many vacation days?"}})  # fmt: skip
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(response.text)
    names = [f["event"] for f in frames]
    assert names[0] == "execution" and names[-1] == "done", names
    assert [int(f["id"]) for f in frames] == list(range(1, len(frames) + 1))
    run_id = frames[0]["data"]["run_id"]
    ends = {f["data"]["step_id"]: f["data"] for f in frames if f["event"] == "step_end"}
    starts = {f["data"]["step_id"]: f["data"] for f in frames if f["event"] == "step_start"}
    assert set(ends) == {"search", "check", "answer", "agent", "notify"} and set(starts) == set(ends) - {"agent"}
    assert ends["search"]["status"] == "succeeded" and ends["search"]["output"]["count"] >= 1
    assert "27 days" in ends["search"]["output"]["hits"][0]["text"] + ends["search"]["output"]["hits"][-1]["text"]
    assert ends["check"]["output"] == {"value": True} and ends["agent"]["status"] == "skipped"
    assert starts["answer"]["input"]["variables"]["question"] == "How many vacation days?"
    assert ends["answer"]["output"]["text"] == "You get 27 days of paid vacation."
    # the prompt step's own content streams between its step_start and step_end
    around = [i for i, f in enumerate(frames) if f["data"].get("step_id") == "answer"]
    assert len(around) == 2 and "content" in names[around[0] : around[1]]
    event_id = ends["notify"]["output"]["event_id"]
    assert json.loads(frames[-1]["data"]["output"]) == {"answer": "You get 27 days of paid vacation.",
                                                       "event_id": event_id}
    assert w.calls("PASSAGES:") == before + 1 and w.calls("You are the fallback agent") == 0

    record = w.api.request("GET", f"/api/v1/executions/{run_id}").json()["data"]
    assert (record["kind"], record["status"], record["workflow_id"], record["workflow_version"]) == (
        "workflow", "succeeded", workflow["id"], 1)
    assert record["total_tokens"] == 48
    steps = {s["step_id"]: s for s in record["steps"]}
    assert set(steps) == set(ends)
    for step_id in ("search", "check", "answer", "notify"):
        step = steps[step_id]
        assert step["status"] == "succeeded" and step["input"] is not None and step["output"] is not None
        assert step["duration_ms"] >= 0 and step["finished_at"] >= step["started_at"] > 0 and step["error"] is None
    assert steps["answer"]["usage"] == {"prompt": 40, "completion": 8, "total": 48}
    assert steps["notify"]["input"]["payload"] == {"question": "How many vacation days?",
                                                   "text": "You get 27 days of paid vacation."}  # fmt: skip
    stored = w.api.request("GET", f"/api/v1/executions/{run_id}/events").json()["data"]
    assert [e["type"] for e in stored] == names

    # the emitted event is in the event log at the run's depth, and started the automation's run
    events = w.api.request("GET", "/api/v1/events", params={"type": "answer.ready"}).json()["data"]
    event = next(e for e in events if e["id"] == event_id)
    assert (event["run_id"], event["depth"], event["source"]) == (run_id, 0, f"workflow:{workflow['id']}")
    assert event["payload"]["text"] == "You get 27 days of paid vacation."

    def linked() -> list[dict[str, Any]]:
        runs = w.api.request("GET", "/api/v1/executions", params={"limit": 100}).json()["data"]
        return [r for r in runs if r["event_id"] == event_id and r["status"] != "running"]

    [started] = wait_for(linked)
    assert (started["agent_id"], started["status"], started["event_depth"]) == (w.logger, "succeeded", 1)
    assert started["input"] == "Log: You get 27 days of paid vacation."


def test_the_other_branch_and_the_202_route(world: World) -> None:
    w = world
    workflow = create(w, definition(w))
    before = w.calls("You are the fallback agent")
    started = w.api.request("POST", f"/api/v1/workflows/{workflow['id']}/run",
                            json={"input": {"question": "Parental leave?", "use_agent": True}})  # fmt: skip
    assert started.status_code == 202, started.text
    run_id = started.json()["data"]["run_id"]
    assert started.json()["data"]["execution_id"] == run_id
    record = wait_for(lambda: (r := w.api.request("GET", f"/api/v1/executions/{run_id}").json()["data"])["status"]
                      != "running" and r)  # fmt: skip
    assert record["status"] == "succeeded", record
    steps = {s["step_id"]: s for s in record["steps"]}
    assert steps["answer"]["status"] == "skipped" and steps["agent"]["output"] == {"text": "Please ask HR."}
    assert w.calls("You are the fallback agent") == before + 1
    bad = w.api.request("POST", f"/api/v1/workflows/{workflow['id']}/run", json={"input": {"question": 42}})
    assert bad.status_code == 422 and "question: 42 is not of type 'string'" in bad.json()["message"]


def test_broken_definitions_are_refused_with_every_problem(world: World) -> None:
    w = world
    body = definition(w)
    body["steps"][0]["after"] = ["notify"]  # search -> … -> notify -> search
    body["steps"][1]["expression"] = "len(steps.search.output.hits) >"
    body["steps"][2]["variables"]["question"] = "{{ steps.search.output.count }}"
    body["steps"][3]["agent_id"] = "agt_nobody"
    body["steps"].append({"id": "extra", "kind": "transform", "template": "{{ steps.ghost.output }}"})
    refused = w.api.request("POST", "/api/v1/workflows", json={"name": "broken", "definition": body})
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_input"
    message = refused.json()["message"]
    for part in ("step 'search' field 'after': the steps form a cycle: 'search' needs 'notify' (after), 'notify' "
                 "needs 'answer' (payload), 'answer' needs 'search' (variables.question)",
                 "step 'check' field 'expression': the expression ends early",
                 "step 'extra' field 'template': steps.ghost.output: unknown step 'ghost'"):  # fmt: skip
        assert part in message, message
    report = w.api.request("POST", "/api/v1/workflows/validate", json={"definition": body}).json()["data"]
    assert report["valid"] is False and {p["step"] for p in report["problems"]} >= {"search", "check", "extra"}
    body = definition(w)
    body["steps"][2]["variables"]["question"] = "{{ steps.search.output.count }}"
    body["steps"][3]["agent_id"] = "agt_nobody"
    report = w.api.request("POST", "/api/v1/workflows/validate", json={"definition": body}).json()["data"]
    assert [(p["step"], p["field"]) for p in report["problems"]] == [("answer", "variables.question"),
                                                                      ("agent", "agent_id")]
    assert "type mismatch" in report["problems"][0]["message"]
    good = w.api.request("POST", "/api/v1/workflows/validate", json={"definition": definition(w)}).json()["data"]
    assert good == {"valid": True, "problems": [], "order": ["search", "check", "answer", "agent", "notify"]}


def test_versions_and_reusable_steps_with_usage(world: World) -> None:
    w = world
    step = w.api.request("POST", "/api/v1/workflow-steps", json={
        "name": f"handbook-search-{next(_names)}", "kind": "search", "entity_type": "action",
        "config": {"query": "{{ input.question }}", "kb_ids": [w.kb], "top_k": 2}})  # fmt: skip
    assert step.status_code == 201, step.text
    step_id = step.json()["data"]["id"]
    body = definition(w)
    body["steps"][0] = {"id": "search", "uses": step_id}
    workflow = create(w, body)
    assert workflow["step_refs"] == [step_id]
    patched = w.api.request("PATCH", f"/api/v1/workflows/{workflow['id']}",
                            json={"definition": definition(w), "note": "inline search"})  # fmt: skip
    assert patched.status_code == 200 and patched.json()["data"]["latest_version"] == 2
    versions = w.api.request("GET", f"/api/v1/workflows/{workflow['id']}/versions").json()["data"]
    assert [(v["number"], v["step_refs"], v["note"]) for v in versions] == [
        (2, [], "inline search"), (1, [step_id], "")]
    usage = w.api.request("GET", f"/api/v1/workflow-steps/{step_id}").json()["data"]["usage"]
    assert usage == [{"workflow_id": workflow["id"], "workflow_name": workflow["name"], "versions": [1],
                      "latest": False}]  # fmt: skip
    # back to the reusable step: now the latest version uses it, so it cannot go, and an edit must keep it sound
    again = w.api.request("PUT", f"/api/v1/workflows/{workflow['id']}", json={"definition": body})
    assert again.json()["data"]["latest_version"] == 3
    assert w.api.request("GET", f"/api/v1/workflow-steps/{step_id}/usage").json()["data"][0]["versions"] == [3, 1]
    assert w.api.request("DELETE", f"/api/v1/workflow-steps/{step_id}").status_code == 409
    breaking = w.api.request("PATCH", f"/api/v1/workflow-steps/{step_id}",
                             json={"config": {"query": "{{ input.topic }}", "kb_ids": [w.kb]}})  # fmt: skip
    assert breaking.status_code == 422
    assert f"workflow {workflow['name']!r} v3: input has no field 'topic'" in breaking.json()["message"]
    ran = w.api.request("POST", f"/api/v1/workflows/{workflow['id']}/run/stream",
                        json={"input": {"question": "How many vacation days?"}})  # fmt: skip
    assert parse_sse(ran.text)[-1]["event"] == "done"
    audit = w.api.request("GET", "/api/v1/audit", params={"resource_id": workflow["id"]}).json()["data"]
    assert {a["action"] for a in audit} >= {"workflow.create", "workflow.update"}


def test_a_workflow_of_another_workspace_is_missing(world: World, tmp_path: Path) -> None:
    from tests.api.test_tokens import issue_user

    workflow = create(world, definition(world))
    outsider = issue_user(world.api, "elsewhere-wf", "outsider-wf", "admin")
    for method, path in (("GET", ""), ("POST", "/run"), ("GET", "/versions")):
        response = world.api.request(method, f"/api/v1/workflows/{workflow['id']}{path}", token=outsider,
                                     **({"json": {"input": {"question": "x"}}} if method == "POST" else {}))
        assert response.status_code == 404, response.text


def test_a_run_interrupted_by_a_shutdown_resumes_at_the_next_start(
    tmp_path: Path, embedder: Any, world: World
) -> None:
    settings = make_settings(tmp_path / "data", model_api_base=world.model.base_url, model_api_key="sk-test")
    with open_api(settings, embedder) as api:
        agent = api.request("POST", "/api/v1/agents", json={"name": "slow", "model": "openai/scripted", "tools": [],
                                                            "instructions": "You are the slow agent."}).json()["data"]
        workflow = api.request("POST", "/api/v1/workflows", json={"name": "slow", "definition": {"steps": [
            {"id": "first", "kind": "transform", "template": {"topic": "{{ input.topic }}"}},
            {"id": "slow", "kind": "agent", "agent_id": agent["id"], "input": "{{ steps.first.output.topic }}"}]}})
        run_id = api.request("POST", f"/api/v1/workflows/{workflow.json()['data']['id']}/run",
                             json={"input": {"topic": "llamas"}}).json()["data"]["run_id"]  # fmt: skip
        wait_for(lambda: SLOW_CALLS, 30)
    # the app stopped while the agent step waited on the model: the run is left running, to resume
    with open_api(settings, embedder) as api:
        record = wait_for(lambda: (r := api.request("GET", f"/api/v1/executions/{run_id}").json()["data"])["status"]
                          != "running" and r)  # fmt: skip
        events = api.request("GET", f"/api/v1/executions/{run_id}/events").json()["data"]
    assert record["status"] == "succeeded" and record["output"] == '{"text":"slow but done"}', record
    assert len(SLOW_CALLS) == 2 and [s["step_id"] for s in record["steps"]] == ["first", "slow"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["step_id"] for e in events if e["type"] == "step_end"] == ["first", "slow"]
