"""A workflow run survives a SIGKILL of the server (``ragline serve`` on one data directory).

Three agent steps in a row call the scripted model server, which counts the calls of each step and holds the
third step's first call open. The server is killed while that call is in flight; after a restart the run goes on
by itself: steps one and two are not called again, step three is called once more, and the run ends ``succeeded``
with every step in its record and one gapless event stream.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from tests.helpers.openai_server import Reply, serve

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.crash]
MARKERS = ("STEP-ONE", "STEP-TWO", "STEP-THREE")


class Model:
    """Replies per step; the third step's first call stalls (the connection stays open, nothing more is sent)."""

    def __init__(self) -> None:
        self.calls = dict.fromkeys(MARKERS, 0)
        self.lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> Reply:
        text = "\n".join(str(m.get("content") or "") for m in body["messages"])
        marker = next((m for m in MARKERS if f"You are {m}" in text), None)
        if marker is None:
            return Reply(text="ok")
        with self.lock:
            self.calls[marker] += 1
            first = self.calls[marker] == 1
        if marker == "STEP-THREE" and first:
            return Reply(text="never finished", stall_after_chunks=1)
        return Reply(text=f"{marker.lower()} done", usage=(5, 2))


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_workflow_run_resumes_after_sigkill_without_running_finished_steps_again(live_server_factory: Any) -> None:
    model = Model()
    for server_model in serve(by_request=model.reply):
        env = {"RAGLINE_MODEL_API_BASE": server_model.base_url, "RAGLINE_MODEL_API_KEY": "sk-test"}
        token = "rl_" + "w" * 43
        first = live_server_factory(env, token=token)
        with first.client() as client:
            agents = [client.post("/api/v1/agents", json={
                "name": marker.lower(), "model": "openai/scripted", "tools": [], "instructions": f"You are {marker}.",
            }).json()["data"]["id"] for marker in MARKERS]  # fmt: skip
            steps = [
                {"id": "one", "kind": "agent", "agent_id": agents[0], "input": "{{ input.topic }}"},
                {"id": "two", "kind": "agent", "agent_id": agents[1], "input": "{{ steps.one.output.text }}"},
                {"id": "three", "kind": "agent", "agent_id": agents[2], "input": "{{ steps.two.output.text }}"},
            ]
            created = client.post("/api/v1/workflows", json={"name": "chain", "definition": {
                "steps": steps, "output": "{{ steps.three.output.text }}"}})  # fmt: skip
            assert created.status_code == 201, created.text
            workflow_id = created.json()["data"]["id"]
            started = client.post(f"/api/v1/workflows/{workflow_id}/run", json={"input": {"topic": "llamas"}})
            assert started.status_code == 202, started.text
            run_id = started.json()["data"]["run_id"]
        wait_for(lambda: model.calls["STEP-THREE"] == 1, 60, "the third step's model call")
        first.process.kill()  # SIGKILL: no shutdown, no terminal event
        first.process.wait(timeout=20)
        assert model.calls == {"STEP-ONE": 1, "STEP-TWO": 1, "STEP-THREE": 1}

        second = live_server_factory(env, token=token)
        with second.client() as client:

            def finished(run_id: str = run_id) -> dict[str, Any] | None:
                try:
                    record = client.get(f"/api/v1/executions/{run_id}").json()["data"]
                except httpx.HTTPError:
                    return None
                return dict(record) if record["status"] != "running" else None

            record = wait_for(finished, 90, "the resumed run to finish")
            events = client.get(f"/api/v1/executions/{run_id}/events").json()["data"]
            with client.stream("GET", f"/api/v1/executions/{run_id}/stream") as response:
                streamed = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert record["status"] == "succeeded", record
    assert record["output"] == "step-three done"
    assert model.calls == {"STEP-ONE": 1, "STEP-TWO": 1, "STEP-THREE": 2}, "steps one and two ran once"
    assert [s["step_id"] for s in record["steps"]] == ["one", "two", "three"]
    assert all(s["status"] == "succeeded" for s in record["steps"])
    assert record["steps"][2]["input"]["input"] == "step-two done"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "one gapless stream across the restart"
    assert [e["seq"] for e in streamed] == [e["seq"] for e in events]
    types = [e["type"] for e in events]
    assert types[0] == "execution" and types[-1] == "done" and types.count("done") + types.count("error") == 1
    resumed = [e for e in events if e["type"] == "thinking" and e["content"].startswith("Resumed after a restart")]
    assert len(resumed) == 1 and "one, two" in resumed[0]["content"]
    ends = [e["step_id"] for e in events if e["type"] == "step_end"]
    assert ends == ["one", "two", "three"]
