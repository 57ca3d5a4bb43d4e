"""Requests authenticate from a short-lived cache of principals, and every way a token can stop working beats it."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update

from engine.db.models import ApiToken, Membership
from tests.api.test_tokens import TOKENS, assert_refused, create_token


def me(api: Any, token: str) -> Any:
    return api.request("GET", "/api/v1/me", token=token)


def cached(api: Any, token: str) -> bool:
    from api.services.identity import hash_secret

    entries = api.services.principals._entries
    return any(key[0] == hash_secret(token) for key in entries)


def test_a_request_fills_the_cache_and_a_bulk_revocation_empties_it(api):
    token = create_token(api, role="viewer")
    assert me(api, token["secret"]).status_code == 200
    assert cached(api, token["secret"])

    async def revoke_in_bulk() -> None:  # a statement, not an ORM attribute change: the other listener
        async with api.services.sessions() as session:
            await session.execute(update(ApiToken).where(ApiToken.id == token["id"]).values(revoked_at=time.time()))
            await session.commit()

    api.call(revoke_in_bulk)
    assert_refused(me(api, token["secret"]))


def test_a_role_change_is_seen_by_the_next_request(api):
    token = create_token(api, role="editor")
    principal = me(api, token["secret"]).json()["data"]
    assert principal["role"] == "editor"

    async def demote() -> None:
        async with api.services.sessions() as session:
            row = await session.get(Membership, (principal["workspace_id"], principal["user_id"]))
            assert row is not None
            row.role = "viewer"
            await session.commit()

    api.call(demote)
    assert me(api, token["secret"]).json()["data"]["role"] == "viewer"


def test_revocation_through_the_api_wins_over_the_cache(api):
    token = create_token(api)
    assert me(api, token["secret"]).status_code == 200
    assert api.request("POST", f"{TOKENS}/{token['id']}/revoke").status_code == 200
    assert_refused(me(api, token["secret"]))
