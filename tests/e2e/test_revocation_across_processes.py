"""A token revoked through one server is refused by every other server on the same database within a second.

Each process keeps resolved principals in a short-lived cache (``api/services/principals.py``); its own writes
empty it at once, but another process's revocation is only seen when the entry expires. Two real `ragline serve`
processes share one metadata database here (the scale-out setup: several servers behind a load balancer), each
with its own vector store.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_a_token_revoked_on_one_server_is_refused_by_another_within_a_second(live_server_factory, tmp_path: Path):
    first = live_server_factory(name="a")
    database = f"sqlite+aiosqlite:///{(tmp_path / 'a' / 'ragline.db').resolve()}"
    second = live_server_factory({"DATABASE_URL": database}, name="b", token=first.token)
    with first.client() as admin:
        created = admin.post("/api/v1/tokens", json={"name": "deploy bot"})
        assert created.status_code == 201, created.text
        token = created.json()["data"]
    with second.client() as other:
        me = other.get("/api/v1/me", headers={"Authorization": f"Bearer {token['secret']}"})
        assert me.status_code == 200, me.text  # the second server has now cached the principal
        with first.client() as admin:
            assert admin.post(f"/api/v1/tokens/{token['id']}/revoke").status_code == 200
        time.sleep(1.1)  # the cache's lifetime; past it the second server must ask the database again
        refused = other.get("/api/v1/me", headers={"Authorization": f"Bearer {token['secret']}"})
        assert refused.status_code == 401, refused.text
