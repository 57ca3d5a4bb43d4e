"""A schedule across real server restarts (``ragline serve`` on one data directory).

* a fire time that passes while the server is down fires exactly once when it comes back, and the
  schedule then counts from now (missed periods are not replayed);
* a fire time after a restart fires on time, in the new process, once;
* neither restart fires a period again; ``next_fire_at`` advanced each time.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter

from tests.e2e.conftest import LiveServer, stop_server

pytestmark = pytest.mark.e2e


def ts(value: str) -> float:
    """An ISO-8601 time from the API as Unix seconds."""
    return datetime.fromisoformat(value).timestamp()


def trigger_runs(server: LiveServer, trigger_id: str) -> list[dict[str, Any]]:
    with server.client() as client:
        runs = client.get("/api/v1/executions", params={"kind": "trigger", "limit": 100}).json()["data"]
    return [r for r in runs if r["trigger_id"] == trigger_id]


def get_trigger(server: LiveServer, trigger_id: str) -> dict[str, Any]:
    with server.client() as client:
        return dict(client.get(f"/api/v1/triggers/{trigger_id}").json()["data"])


def wait_runs(server: LiveServer, trigger_id: str, count: int, timeout_s: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = trigger_runs(server, trigger_id)
        if len(runs) >= count:
            return runs
        time.sleep(0.1)
    raise AssertionError(f"expected {count} runs of {trigger_id}, saw {len(trigger_runs(server, trigger_id))}")


def set_next_fire(data_dir: Path, trigger_id: str, at: float) -> None:
    """Edit the stopped server's database, as if the schedule had been saved long ago."""
    with sqlite3.connect(data_dir / "ragline.db") as db:
        assert db.execute("UPDATE triggers SET next_fire_at = ? WHERE id = ?", (at, trigger_id)).rowcount == 1


def test_schedule_fires_once_across_restarts(live_server_factory: Any, tmp_path: Path) -> None:
    token = "rl_" + "s" * 43
    first = live_server_factory(token=token)
    with first.client() as client:
        agent = client.post("/api/v1/agents", json={"name": "nightly", "max_steps": 2}).json()["data"]["id"]
        created = client.post("/api/v1/triggers", json={
            "name": "new year", "agent_id": agent, "type": "schedule", "cron": "0 0 1 1 *", "timezone": "UTC",
            "input_template": "scheduled for {time}"})
        assert created.status_code == 201, created.text
    trigger = created.json()["data"]
    new_year = croniter("0 0 1 1 *", datetime.now(UTC)).get_next(float)
    assert ts(trigger["next_fire_at"]) == new_year
    stop_server(first)

    # 1. the fire time passes while no server runs: one fire at start-up, then from now on
    due = time.time() + 1.0
    set_next_fire(tmp_path / "data", trigger["id"], due)
    time.sleep(max(0.0, due + 0.5 - time.time()))
    started = time.time()
    second = live_server_factory(token=token)
    boot_s = time.time() - started
    runs = wait_runs(second, trigger["id"], 1)
    caught_up = get_trigger(second, trigger["id"])
    assert started <= ts(caught_up["last_fired_at"]) <= time.time() and ts(caught_up["next_fire_at"]) == new_year
    assert runs[0]["input"].startswith("scheduled for " + datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%dT%H"))

    # 2. a fire time that falls after a restart fires on time in the new process
    fire_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=round(2 * boot_s) + 3)
    cron = f"{fire_at.minute} {fire_at.hour} * * * {fire_at.second}"  # daily, seconds as the 6th field
    with second.client() as client:
        assert client.patch(f"/api/v1/triggers/{trigger['id']}", json={"cron": cron}).status_code == 200
    assert ts(get_trigger(second, trigger["id"])["next_fire_at"]) == fire_at.timestamp()
    stop_server(second)
    third = live_server_factory(token=token)
    up_in_time = time.time() < fire_at.timestamp()  # else (a very loaded machine) it fires once at start-up
    # (generous: the first run of a process imports litellm, which holds up the API meanwhile)
    runs = wait_runs(third, trigger["id"], 2, timeout_s=fire_at.timestamp() - time.time() + 30)
    fired = get_trigger(third, trigger["id"])
    late_s = ts(fired["last_fired_at"]) - fire_at.timestamp()
    assert 0 <= late_s < 1.0 if up_in_time else late_s >= 0
    assert ts(fired["next_fire_at"]) == (fire_at + timedelta(days=1)).timestamp()

    # 3. neither restart fired a period again: the start-up catch-up happened once, this fire once
    time.sleep(1.0)
    assert len(trigger_runs(third, trigger["id"])) == 2
    wait_done = time.monotonic() + 10
    while any(r["status"] == "running" for r in trigger_runs(third, trigger["id"])) and time.monotonic() < wait_done:
        time.sleep(0.1)
    assert all(r["status"] != "running" for r in trigger_runs(third, trigger["id"]))
