"""SSE against a real server process: incremental delivery, keepalive, disconnect and Last-Event-ID resume."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers.openai_server import Reply, scripted_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def read_frames(lines, limit: int | None = None) -> tuple[list[dict], list[float], int]:
    """Read SSE frames from an iterator of lines as they arrive; stops after ``limit`` events.

    Returns the frames, their arrival times and the number of keepalive comments.
    """
    frames, arrivals, pings, block = [], [], 0, []
    for line in lines:
        if line.startswith(":"):
            pings += 1
            continue
        if line:
            block.append(line)
            continue
        fields = dict(entry.split(": ", 1) for entry in block if ": " in entry)
        block = []
        if "event" in fields:
            frames.append({"event": fields["event"], "id": int(fields["id"]), "data": json.loads(fields["data"])})
            arrivals.append(time.monotonic())
            if limit is not None and len(frames) >= limit:
                break
    return frames, arrivals, pings


def test_disconnect_and_resume_gets_every_event_once(live_server_factory):
    slow_answer = Reply(
        reasoning="Let me think about this.",
        text="Ragline streams every token as it arrives. " * 4,
        split=24,
        delay_s=0.15,
    )
    with scripted_server(default=lambda _n: slow_answer) as model:
        server = live_server_factory(
            {
                "RAGLINE_MODEL_API_BASE": model.base_url,
                "RAGLINE_MODEL_API_KEY": "sk-test",
                "RAGLINE_SSE_PING_INTERVAL_S": "0.1",
            }
        )
        with server.client() as client:
            agent = client.post("/api/v1/agents", json={"name": "streamer", "model": "openai/scripted", "tools": []})
            assert agent.status_code == 201, agent.text
            agent_id = agent.json()["data"]["id"]
            with client.stream("POST", f"/api/v1/agents/{agent_id}/run/stream", json={"input": "hello"}) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                first, _, _ = read_frames(response.iter_lines(), limit=6)
            # disconnected mid-run: the events so far arrived while the run was still going, and it goes on
            run_id = first[0]["data"]["run_id"]
            assert client.get(f"/api/v1/executions/{run_id}").json()["data"]["status"] == "running"
            with client.stream(
                "GET", f"/api/v1/executions/{run_id}/stream", headers={"Last-Event-ID": str(first[-1]["id"])}
            ) as response:
                rest, rest_arrivals, pings = read_frames(response.iter_lines())
            events = first + rest
            assert [e["id"] for e in events] == list(range(1, len(events) + 1)), "each event exactly once, in order"
            names = [e["event"] for e in events]
            assert names[0] == "execution" and names[-1] == "done" and "thinking" in names
            assert names.count("done") + names.count("error") == 1
            assert rest_arrivals[-1] - rest_arrivals[0] > 0.5, "live events arrive incrementally"
            assert pings > 0, "keepalive comments while the model is slow"
            content = "".join(e["data"]["text"] for e in events if e["event"] == "content")
            assert content == slow_answer.text == events[-1]["data"]["output"]
            stored = client.get(f"/api/v1/executions/{run_id}/events").json()["data"]
            assert [e["seq"] for e in stored] == [e["id"] for e in events]
            record = client.get(f"/api/v1/executions/{run_id}").json()["data"]
            assert record["status"] == "succeeded" and record["total_tokens"] == 15


def test_cancel_over_http_ends_the_stream_with_one_error(live_server_factory):
    endless = Reply(text="still going " * 200, split=200, delay_s=0.05)
    with scripted_server(default=lambda _n: endless) as model:
        server = live_server_factory({"RAGLINE_MODEL_API_BASE": model.base_url, "RAGLINE_MODEL_API_KEY": "sk-test"})
        with server.client() as client:
            agent_id = client.post(
                "/api/v1/agents", json={"name": "long", "model": "openai/scripted", "tools": []}
            ).json()["data"]["id"]
            run_id = client.post(f"/api/v1/agents/{agent_id}/run", json={"input": "go"}).json()["data"]["run_id"]
            with client.stream("GET", f"/api/v1/executions/{run_id}/stream") as response:
                lines = response.iter_lines()
                frames, _, _ = read_frames(lines, limit=3)
                assert client.post(f"/api/v1/executions/{run_id}/cancel").json()["data"]["cancelled"] is True
                more, _, _ = read_frames(lines)
            names = [f["event"] for f in frames + more]
            assert names[-1] == "error" and (frames + more)[-1]["data"]["code"] == "cancelled"
            assert names.count("error") == 1 and "done" not in names
            assert client.get(f"/api/v1/executions/{run_id}").json()["data"]["status"] == "cancelled"
