"""One run path: ``done`` is the last word, and the app runs on services a test hands in."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import pytest

from engine.llm import Finish, TextDelta, UsageReport
from engine.testing import ScriptedModelClient, StaticModelProvider
from tests.api.conftest import open_api
from tests.api.test_chat_and_runs import parse_sse

pytestmark = pytest.mark.slow
REPEATS = 50


@pytest.fixture
def busy_core() -> Iterator[None]:
    """Another thread keeps a core busy (hashing releases the GIL, so it competes for CPU, not the GIL)."""
    stop = threading.Event()
    block = b"x" * (4 << 20)

    def spin() -> None:
        while not stop.is_set():
            hashlib.sha256(block).digest()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def test_history_is_complete_as_soon_as_done_arrives(api, handbook, busy_core) -> None:
    session_id = None
    for turn in range(REPEATS):
        body = {"message": "How many weeks of parental leave?", **({"session_id": session_id} if session_id else {})}
        frames = parse_sse(api.request("POST", "/api/v1/assistant/chat", json=body).text)
        assert frames[-1]["event"] == "done", frames[-1]
        run_id, session_id = frames[0]["data"]["run_id"], frames[0]["data"]["session_id"]
        citations = [f["data"]["chunk_id"] for f in frames if f["event"] == "citation"]
        # read right after done: the answer, its citations and the final record are already stored
        history = api.request("GET", f"/api/v1/chat/sessions/{session_id}/messages?limit=100").json()["data"]
        assert len(history) == 2 * (turn + 1), f"turn {turn}: {[m['role'] for m in history]}"
        answer = history[-1]
        assert answer["role"] == "assistant" and answer["run_id"] == run_id
        assert answer["content"] == frames[-1]["data"]["output"]
        assert [c["chunk_id"] for c in answer["citations"]] == citations and citations
        record = api.request("GET", f"/api/v1/executions/{run_id}").json()["data"]
        assert (record["status"], record["output"]) == ("succeeded", answer["content"]) and record["finished_at"]


def test_run_record_is_final_as_soon_as_done_arrives(api, handbook, busy_core) -> None:
    agent = api.request("POST", "/api/v1/agents", json={"name": "hr", "kb_ids": [handbook]}).json()["data"]
    for _ in range(REPEATS):
        response = api.request("POST", f"/api/v1/agents/{agent['id']}/run/stream", json={"input": "parental leave"})
        frames = parse_sse(response.text)
        terminal = frames[-1]
        assert terminal["event"] == "done"
        record = api.request("GET", f"/api/v1/executions/{terminal['data']['run_id']}").json()["data"]
        assert record["status"] == "succeeded" and record["finished_at"] is not None
        assert record["output"] == terminal["data"]["output"] and record["total_tokens"] > 0
        stored = api.request("GET", f"/api/v1/executions/{terminal['data']['run_id']}/events").json()["data"]
        assert [e["type"] for e in stored] == [f["event"] for f in frames]


def test_the_app_runs_on_services_handed_in(settings, embedder) -> None:
    """No patching: the test builds the services with a scripted model provider and the app uses them."""
    scripted = ScriptedModelClient([[TextDelta("Scripted "), TextDelta("answer."), UsageReport(3, 2), Finish("stop")]])
    provider = StaticModelProvider(scripted)
    with open_api(settings, embedder, models=provider) as api:
        agent = api.request("POST", "/api/v1/agents", json={"name": "a", "model": "openai/gpt-4o-mini", "tools": []})
        run = api.request("POST", f"/api/v1/agents/{agent.json()['data']['id']}/run/stream", json={"input": "hi"})
        frames = parse_sse(run.text)
    assert [f["event"] for f in frames] == ["execution", "content", "content", "done"]
    assert frames[-1]["data"]["output"] == "Scripted answer." and frames[-1]["data"]["token_usage"]["total"] == 5
    assert provider.names == ["openai/gpt-4o-mini"]
    scripted.assert_complete()
    assert scripted.calls[0].messages[-1].content == "hi"


ZERO_CONFIG_RUN = """
import asyncio, sys
from pathlib import Path
import engine
from api.container import open_services
from api.services.runs import RunStart
from engine.settings import Settings

async def main() -> None:
    services = await open_services(Settings.from_env({}, data_dir=Path(sys.argv[1]), torch_threads=1))
    await services.start()
    try:
        issued = await services.access.bootstrap()
        principal = await services.access.authenticate(issued.secret)
        await services.knowledge.create_kb(principal.workspace_id, "empty")
        run_id = await services.runs.start(principal, RunStart(user_input="anything?", kind="chat"))
        record = await services.run_manager.wait(run_id)
        print(record.status, record.model, "litellm" in sys.modules)
    finally:
        await services.close()

asyncio.run(main())
"""


def test_the_zero_config_assistant_never_imports_litellm(tmp_path) -> None:
    """The built-in model is native: a fresh process answers with it and has not imported litellm (about 2 s)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", ZERO_CONFIG_RUN, str(tmp_path / "data")],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["succeeded", "ragline/extractive", "False"]
