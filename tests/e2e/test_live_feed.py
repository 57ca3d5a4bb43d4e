"""The live feed against a real server process, with the real ``websockets`` client and ``httpx-sse``: events
arrive in order; a client that reconnects with its last id misses nothing; another workspace's events never
arrive; a revoked token is disconnected; the SSE stream resumes with Last-Event-ID; ``?token=`` never reaches the
server's log; ``/clients`` lists the connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.conftest import ROOT, LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TIMEOUT_S = 20.0


def ws_url(server: LiveServer, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return server.base_url.replace("http://", "ws://") + "/api/v1/ws" + (f"?{query}" if query else "")


def open_feed(server: LiveServer, token: str, *, in_query: bool = False, **params: str) -> ClientConnection:
    headers = {} if in_query else {"Authorization": f"Bearer {token}"}
    if in_query:
        params["token"] = token
    socket = connect(ws_url(server, **params), additional_headers=headers, open_timeout=TIMEOUT_S)
    hello = json.loads(socket.recv(timeout=TIMEOUT_S))
    assert hello["op"] == "hello" and hello["client_id"].startswith("cli_")
    return socket


def next_events(socket: ClientConnection, count: int, type: str = "tick.n") -> list[dict[str, Any]]:
    """The next ``count`` events of ``type`` (other events of the workspace are skipped)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(found) < count:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["op"] == "event" and message["event"]["type"] == type:
            found.append(message["event"])
    return found


def emit(client: httpx.Client, n: int, type: str = "tick.n", **headers: str) -> dict[str, Any]:
    response = client.post("/api/v1/events", json={"type": type, "payload": {"n": n}}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def cli_token(server: LiveServer, workspace: str, user: str) -> str:
    """A token of another user in another workspace, minted by the CLI while the server runs."""
    data_dir = server.log_path.parent / "data"
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "token", "create", "--workspace", workspace, "--role", "admin",
         "--user", user],
        cwd=ROOT, env={**os.environ, "RAGLINE_DATA_DIR": str(data_dir)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_order_resume_isolation_revocation_and_logs(live_server_factory: Any) -> None:
    server = live_server_factory({"RAGLINE_LIVE_RECHECK_S": "30"})
    outsider = cli_token(server, "elsewhere", "outsider")
    with server.client() as client:
        follower = open_feed(server, server.token, in_query=True)  # seed 001's way: ?token= on the handshake
        resumer = open_feed(server, server.token)
        stranger = open_feed(server, outsider)

        # the workspace's live connections
        listed = client.get("/api/v1/clients").json()["data"]
        assert {c["kind"] for c in listed} == {"ws"} and len(listed) == 2, listed
        assert all(c["remote"].startswith("127.0.0.1:") and c["connected_at"].endswith("Z") for c in listed)

        sent = [emit(client, n) for n in range(20)]
        got = next_events(follower, 20)
        assert [e["n"] for e in (g["payload"] for g in got)] == list(range(20)), "in order"
        assert [e["id"] for e in got] == [e["id"] for e in sent]

        # a client reads 8 events, goes away, and comes back with its last id: it misses nothing
        first = next_events(resumer, 8)
        resumer.close()
        sent += [emit(client, n) for n in range(20, 30)]
        back = open_feed(server, server.token, after=first[-1]["id"])
        rest = next_events(back, 22)
        assert [e["payload"]["n"] for e in first + rest] == list(range(30)), "each event once, in order"
        # the resume also works as a first message instead of ?after=
        again = connect(ws_url(server), additional_headers={"Authorization": f"Bearer {server.token}"})
        assert json.loads(again.recv(timeout=TIMEOUT_S))["op"] == "hello"
        again.send(json.dumps({"op": "resume", "after": sent[27]["id"]}))
        assert [e["payload"]["n"] for e in next_events(again, 2)] == [28, 29]
        again.close()

        # another workspace's events never arrive; its own do
        theirs = emit(client, 99, "their.news", Authorization=f"Bearer {outsider}")
        assert [e["id"] for e in next_events(stranger, 1, "their.news")] == [theirs["id"]]
        with pytest.raises(TimeoutError):
            next_events_quick(stranger, "tick.n")

        # a revoked token is disconnected (4401) and refused at the next handshake (401)
        minted = client.post("/api/v1/tokens", json={"name": "live"}).json()["data"]
        doomed = open_feed(server, minted["secret"])
        assert client.post(f"/api/v1/tokens/{minted['id']}/revoke").status_code in (200, 201)
        with pytest.raises(ConnectionClosed) as closed:
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                doomed.recv(timeout=TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        with pytest.raises(InvalidStatus) as refused:
            open_feed(server, minted["secret"])
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["code"] == "unauthorized"
        with pytest.raises(InvalidStatus) as anonymous:
            connect(ws_url(server), open_timeout=TIMEOUT_S)
        assert anonymous.value.response.status_code == 401

        for socket in (follower, back, stranger):
            socket.close()
    log = server.log_path.read_text(errors="replace")
    assert server.token not in log and outsider not in log and minted["secret"] not in log
    assert "token=[redacted]" in log, "the handshake is logged, its token redacted"


def next_events_quick(socket: ClientConnection, type: str) -> None:
    """Raise ``TimeoutError`` unless an event of ``type`` arrives within a second."""
    deadline = time.monotonic() + 1.0
    while True:
        message = json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["op"] == "event" and message["event"]["type"] == type:
            raise AssertionError(f"an event of another workspace arrived: {message}")


def test_the_sse_stream_follows_and_resumes_with_last_event_id(live_server_factory: Any) -> None:
    server = live_server_factory({"RAGLINE_SSE_PING_INTERVAL_S": "0.5"})
    with server.client() as client:
        first: list[str] = []
        with connect_sse(client, "GET", "/api/v1/events/stream") as source:
            assert source.response.status_code == 200
            assert client.get("/api/v1/clients").json()["data"][0]["kind"] == "sse"
            sent = [emit(client, n) for n in range(6)]
            for sse in source.iter_sse():
                if sse.event == "tick.n":
                    first.append(sse.id)
                    if len(first) == 3:
                        break
        assert first == [e["id"] for e in sent[:3]]
        sent += [emit(client, n) for n in range(6, 9)]
        resumed: list[int] = []
        with connect_sse(client, "GET", "/api/v1/events/stream", headers={"Last-Event-ID": first[-1]}) as source:
            for sse in source.iter_sse():
                if sse.event == "tick.n":
                    resumed.append(json.loads(sse.data)["payload"]["n"])
                    if len(resumed) == 6:
                        break
        assert resumed == [3, 4, 5, 6, 7, 8]
        # catch up without following: what the log holds after the cursor, then the stream ends
        with connect_sse(client, "GET", "/api/v1/events/stream",
                         params={"after": sent[6]["id"], "follow": "false"}) as source:  # fmt: skip
            assert [json.loads(s.data)["payload"]["n"] for s in source.iter_sse() if s.event == "tick.n"] == [7, 8]
