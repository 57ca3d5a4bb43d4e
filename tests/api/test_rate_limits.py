"""Per-token rate limits: 429 with Retry-After and the error envelope, other tokens unaffected."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_settings, open_api

pytestmark = pytest.mark.slow


def test_a_token_over_its_budget_gets_429_and_others_go_on(tmp_path, embedder):
    settings = make_settings(tmp_path / "data", rate_limit_per_minute=5)
    with open_api(settings, embedder) as api:
        statuses = [api.request("GET", "/api/v1/knowledge-bases").status_code for _ in range(7)]
        assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
        limited = api.request("GET", "/api/v1/knowledge-bases")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["data"] is None and limited.json()["code"] == "rate_limited"
        other = api.call(
            lambda: api.services.access.create_user_token(
                workspace_name="default", user_name="bob", role="viewer", token_name="t"
            )
        )
        assert api.request("GET", "/api/v1/knowledge-bases", token=other.secret).status_code == 200
        assert api.request("GET", "/health").status_code == 200  # public routes are not throttled per token
