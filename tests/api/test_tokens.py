"""API token lifecycle over HTTP: secrets shown once, revocation/expiry/regeneration effective at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.api.conftest import Api, make_settings, open_api

TOKENS = "/api/v1/tokens"
SECRET_FIELDS = ("secret", "secret_hash", "hash")


def issue_user(api: Api, workspace: str, user: str, role: str) -> str:
    """A new user with ``role`` in ``workspace`` (created if missing), through the CLI's service call."""
    issued = api.client.blocking_portal.call(lambda: api.services.access.create_user_token(
        workspace_name=workspace, user_name=user, role=role, token_name=f"{user}'s token"))
    return str(issued.secret)


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["data"] is None and body["error"] and body["message"] and body["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def create_token(api: Api, token: str | None = None, **body: Any) -> dict[str, Any]:
    response = api.request("POST", TOKENS, json={"name": "ci", **body}, token=token)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def test_token_lifecycle(api):
    created = create_token(api, name="deploy bot", role="editor", expires_in_days=30)
    secret, token_id = created["secret"], created["id"]
    assert secret.startswith("rl_") and len(secret) >= 40 and created["prefix"] == secret[:10]
    assert created["role"] == "editor" and created["active"] is True
    assert 29.9 * 86400 < created["expires_at"] - time.time() <= 30 * 86400

    listed = api.request("GET", TOKENS, params={"limit": 1})
    assert listed.status_code == 200
    page = listed.json()
    assert page["pagination"]["total"] == 2 and page["pagination"]["total_pages"] == 2 and len(page["data"]) == 1
    everything = api.request("GET", TOKENS).text + api.request("GET", f"{TOKENS}/{token_id}").text
    assert secret not in everything and secret[10:] not in everything
    for row in api.request("GET", TOKENS).json()["data"]:
        assert not set(SECRET_FIELDS) & set(row) and row["prefix"].startswith("rl_")

    me = api.request("GET", f"{TOKENS}/validate", token=secret)
    assert me.status_code == 200 and me.json()["data"]["token"]["id"] == token_id
    assert me.json()["data"]["role"] == "editor"
    assert api.request("GET", f"{TOKENS}/{token_id}").json()["data"]["last_used_at"] is not None

    renamed = api.request("PATCH", f"{TOKENS}/{token_id}", json={"name": "deploy bot 2", "role": "viewer"})
    assert renamed.status_code == 200 and renamed.json()["data"]["name"] == "deploy bot 2"
    assert api.request("GET", f"{TOKENS}/validate", token=secret).json()["data"]["role"] == "viewer"

    regenerated = api.request("POST", f"{TOKENS}/{token_id}/regenerate")
    assert regenerated.status_code == 200
    new_secret = regenerated.json()["data"]["secret"]
    assert new_secret != secret and regenerated.json()["data"]["id"] == token_id
    assert_refused(api.request("GET", f"{TOKENS}/validate", token=secret))  # the very next request
    assert api.request("GET", f"{TOKENS}/validate", token=new_secret).status_code == 200

    later = time.time() + 400 * 86400
    renewed = api.request("POST", f"{TOKENS}/{token_id}/renew", json={"expires_at": later})
    assert renewed.status_code == 200 and renewed.json()["data"]["expires_at"] == later
    assert "secret" not in renewed.json()["data"]
    still = api.request("GET", f"{TOKENS}/validate", token=new_secret)
    assert still.status_code == 200 and still.json()["data"]["token"]["expires_at"] == later

    revoked = api.request("POST", f"{TOKENS}/{token_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["data"]["revoked_at"] is not None
    assert revoked.json()["data"]["active"] is False
    assert_refused(api.request("GET", "/api/v1/knowledge-bases", token=new_secret))
    assert api.request("POST", f"{TOKENS}/{token_id}/renew", json={"expires_in_days": 1}).status_code == 409
    assert api.request("POST", f"{TOKENS}/{token_id}/regenerate").status_code == 409

    audit = api.request("GET", f"{TOKENS}/{token_id}/audit").json()
    assert [e["action"] for e in audit["data"]] == ["revoked", "renewed", "regenerated", "updated", "created"]
    assert audit["pagination"]["total"] == 5 and secret not in str(audit)

    assert api.request("DELETE", f"{TOKENS}/{token_id}").status_code == 200
    assert api.request("GET", f"{TOKENS}/{token_id}").status_code == 404
    assert api.request("GET", f"{TOKENS}/{token_id}/audit").status_code == 404
    workspace_log = api.request("GET", f"{TOKENS}/audit").json()["data"]
    assert workspace_log[0]["action"] == "deleted" and workspace_log[0]["token_id"] == token_id


def test_expired_token_is_refused_and_renew_revives_the_same_secret(api):
    created = create_token(api, expires_at=time.time() + 1.0)
    assert api.request("GET", "/api/v1/me", token=created["secret"]).status_code == 200
    time.sleep(max(0.0, created["expires_at"] - time.time()) + 0.05)
    assert_refused(api.request("GET", "/api/v1/me", token=created["secret"]))
    assert api.request("GET", f"{TOKENS}/{created['id']}").json()["data"]["active"] is False

    assert api.request("POST", f"{TOKENS}/{created['id']}/renew", json={"never": True}).status_code == 200
    assert api.request("GET", "/api/v1/me", token=created["secret"]).status_code == 200
    assert api.request("GET", f"{TOKENS}/{created['id']}").json()["data"]["expires_at"] is None


def test_bad_credentials_are_401_with_the_envelope(api):
    assert_refused(api.client.get("/api/v1/me"))
    assert_refused(api.request("GET", "/api/v1/me", token="rl_" + "x" * 43))
    assert_refused(api.request("GET", "/api/v1/me", token="not-a-ragline-token"))
    assert_refused(api.client.get("/api/v1/me", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}))
    by_key = api.client.get("/api/v1/me", headers={"X-API-Key": api.token})
    assert by_key.status_code == 200 and by_key.json()["data"]["role"] == "admin"


def test_create_refuses_escalation_and_server_owned_fields(api):
    viewer = create_token(api, role="viewer")["secret"]
    up = api.request("POST", TOKENS, json={"name": "up", "role": "admin"}, token=viewer)
    assert up.status_code == 403 and up.json()["data"] is None and up.json()["code"] == "forbidden"
    child = create_token(api, token=viewer)
    assert child["role"] == "viewer"  # inherits the caller's role, never more
    for field, value in [("token", "rl_" + "a" * 43), ("workspace_id", "ws_other"), ("secret_hash", "0" * 64),
                         ("secret", "rl_" + "b" * 43), ("revoked_at", None), ("prefix", "rl_x")]:
        response = api.request("POST", TOKENS, json={"name": "x", field: value})
        assert response.status_code == 422, (field, response.text)
        assert response.json()["data"] is None and field in response.json()["message"]
    for body in [{"name": "x", "role": "root"}, {"name": ""}, {"name": "x", "expires_at": time.time() - 10},
                 {"name": "x", "expires_in_days": 0}, {"name": "x", "expires_in_days": 1, "expires_at": 2e9},
                 {"name": "x", "kb_ids": []}, {"name": "x", "kb_ids": ["kb_does_not_exist"]}]:
        assert api.request("POST", TOKENS, json=body).status_code == 422, body
    upgrade = api.request("PATCH", f"{TOKENS}/{child['id']}", json={"role": "editor"}, token=viewer)
    assert upgrade.status_code == 403


def test_members_manage_only_their_own_tokens(api):
    admin_token_id = api.request("GET", "/api/v1/me").json()["data"]["token"]["id"]
    editor = issue_user(api, "default", "erin", "editor")
    editor_token_id = api.request("GET", "/api/v1/me", token=editor).json()["data"]["token"]["id"]
    own = create_token(api, token=editor, name="erin's ci")
    assert own["role"] == "editor"

    listed = api.request("GET", TOKENS, token=editor).json()
    assert {t["id"] for t in listed["data"]} == {editor_token_id, own["id"]} and listed["pagination"]["total"] == 2
    for method, suffix in [("GET", ""), ("PATCH", ""), ("POST", "/revoke"), ("POST", "/regenerate"),
                           ("POST", "/renew"), ("DELETE", ""), ("GET", "/audit")]:
        body = {"name": "mine now"} if method == "PATCH" else {"never": True} if suffix == "/renew" else None
        response = api.request(method, f"{TOKENS}/{admin_token_id}{suffix}", token=editor, json=body)
        assert response.status_code == 404, (method, suffix, response.text)
    assert api.request("GET", f"{TOKENS}/audit", token=editor).status_code == 403
    assert api.request("POST", TOKENS, json={"name": "x", "user_id": "usr_x"}, token=editor).status_code == 403

    # a weaker token of the same user cannot read or regenerate a stronger one
    weak = create_token(api, token=editor, role="viewer")["secret"]
    assert api.request("POST", f"{TOKENS}/{own['id']}/regenerate", token=weak).status_code == 404
    assert {t["id"] for t in api.request("GET", TOKENS, token=weak).json()["data"]} <= {
        t["id"] for t in api.request("GET", TOKENS, token=editor).json()["data"]} - {own["id"], editor_token_id}

    # the admin sees and revokes every token of the workspace
    everyone = {t["id"] for t in api.request("GET", TOKENS, params={"limit": 100}).json()["data"]}
    assert {admin_token_id, editor_token_id, own["id"]} <= everyone
    assert api.request("POST", f"{TOKENS}/{own['id']}/revoke").status_code == 200
    assert api.request("POST", f"{TOKENS}/{editor_token_id}/revoke").status_code == 200
    assert_refused(api.request("GET", "/api/v1/me", token=editor))


def test_admin_issues_a_token_for_a_member(api):
    viewer = issue_user(api, "default", "vic", "viewer")
    vic = api.request("GET", "/api/v1/me", token=viewer).json()["data"]["user_id"]
    issued = create_token(api, user_id=vic, name="for vic")
    assert issued["user_id"] == vic
    me = api.request("GET", "/api/v1/me", token=issued["secret"]).json()["data"]
    assert me["user_id"] == vic and me["role"] == "viewer"  # capped by the membership, not the issuer
    assert api.request("POST", TOKENS, json={"name": "x", "user_id": "usr_nobody"}).status_code == 404


def test_kb_limited_token_sees_only_its_knowledge_bases(api):
    mine, other = api.create_kb("mine"), api.create_kb("other")
    limited = create_token(api, role="editor", kb_ids=[mine])
    assert limited["kb_ids"] == [mine]
    secret = limited["secret"]

    kbs = api.request("GET", "/api/v1/knowledge-bases", token=secret).json()
    assert [k["id"] for k in kbs["data"]] == [mine] and kbs["pagination"]["total"] == 1
    assert api.request("GET", f"/api/v1/knowledge-bases/{other}", token=secret).status_code == 404
    assert api.request("GET", f"/api/v1/knowledge-bases/{mine}", token=secret).status_code == 200
    upload = api.upload(other, "notes.txt", b"the quarterly llama census counts 42 llamas", token=secret)
    assert upload.status_code == 404 and upload.json()["data"] is None
    assert api.request("GET", f"/api/v1/knowledge-bases/{other}/files", token=secret).status_code == 404
    searched = api.request("POST", f"/api/v1/knowledge-bases/{other}/search", json={"query": "llama"}, token=secret)
    assert searched.status_code == 404

    # the admin puts a document in the other KB; the limited token never finds it
    file_id = api.upload(other, "census.txt", b"The quarterly llama census counts 42 llamas.").json()["data"]["id"]
    assert api.wait_ingested(other, file_id)["status"] == "ready"
    assert api.search("llama census", kb_ids=[other])
    hits = api.request("POST", "/api/v1/search", json={"query": "llama census", "kb_ids": [other]}, token=secret)
    assert hits.status_code == 200 and hits.json()["data"] == []
    assert api.request("POST", "/api/v1/search", json={"query": "llama census"}, token=secret).json()["data"] == []
    assert api.upload(mine, "mine.txt", b"alpacas are not llamas", token=secret).status_code == 201

    # tokens minted by a limited token stay limited, and cannot widen themselves
    child = create_token(api, token=secret)
    assert child["kb_ids"] == [mine]
    widen = api.request("PATCH", f"{TOKENS}/{child['id']}", json={"kb_ids": [mine, other]}, token=secret)
    assert widen.status_code == 422
    assert api.request("POST", TOKENS, json={"name": "x", "kb_ids": [other]}, token=secret).status_code == 422
    # the admin may widen it; null means every knowledge base
    widened = api.request("PATCH", f"{TOKENS}/{child['id']}", json={"kb_ids": None})
    assert widened.status_code == 200 and widened.json()["data"]["kb_ids"] is None
    assert api.request("GET", f"/api/v1/knowledge-bases/{other}", token=child["secret"]).status_code == 200
    # the limited token now no longer manages its (stronger) child
    assert api.request("GET", f"{TOKENS}/{child['id']}", token=secret).status_code == 404


def test_kb_ids_must_belong_to_the_workspace(api):
    other_admin = issue_user(api, "elsewhere", "olga", "admin")
    foreign = api.create_kb("theirs", token=other_admin)
    response = api.request("POST", TOKENS, json={"name": "x", "kb_ids": [foreign]})
    assert response.status_code == 422 and response.json()["data"] is None


def test_minting_has_a_strict_budget_per_user(api):
    """Create and regenerate mint secrets: 10 a minute per user (429 with Retry-After beyond); others are unaffected."""
    mia, max_ = issue_user(api, "default", "mia", "viewer"), issue_user(api, "default", "max", "viewer")
    per_minute = 10  # RAGLINE_TOKEN_MINT_PER_MINUTE, by default
    burst = [api.request("POST", TOKENS, json={"name": f"burst {i}"}, token=mia) for i in range(40)]
    statuses = [r.status_code for r in burst]
    assert statuses == [201] * per_minute + [429] * (40 - per_minute), statuses
    for refused in burst[per_minute:]:
        assert refused.json()["data"] is None and refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    minted = burst[0].json()["data"]["id"]
    assert api.request("POST", f"{TOKENS}/{minted}/regenerate", token=mia).status_code == 429  # regenerating mints
    assert api.request("GET", TOKENS, token=mia, params={"limit": 100}).json()["pagination"]["total"] == 11

    # another user, and an admin minting for mia, spend their own budgets
    assert create_token(api, token=max_)["role"] == "viewer"
    mia_id = api.request("GET", "/api/v1/me", token=mia).json()["data"]["user_id"]
    assert create_token(api, user_id=mia_id, name="from the admin")["user_id"] == mia_id
    assert api.request("POST", f"{TOKENS}/{minted}/regenerate").status_code == 200
    # refused requests (a stronger role, another member) are refused for what they are, not counted
    assert api.request("POST", TOKENS, json={"name": "up", "role": "admin"}, token=max_).status_code == 403


def test_the_minting_budget_is_configured_by_settings(tmp_path: Path, embedder: Any) -> None:
    with open_api(make_settings(tmp_path / "data", token_mint_per_minute=3), embedder) as api:
        statuses = [api.request("POST", TOKENS, json={"name": f"t{i}"}).status_code for i in range(4)]
        assert statuses == [201, 201, 201, 429], statuses


def test_minting_has_a_daily_budget_too(api):
    from api.services.access import AccessService
    from engine.errors import RateLimited

    access = AccessService(api.services.sessions, mint_per_minute=100, mint_per_day=3)
    admin = api.call(api.services.access.authenticate, api.token)

    async def mint() -> str:
        try:
            await access.create_token(admin, name="daily")
        except RateLimited as exc:
            return f"429 after {exc.retry_after:.0f}s"
        return "201"

    outcomes = [api.call(mint) for _ in range(4)]
    assert outcomes[:3] == ["201"] * 3 and outcomes[3].startswith("429 after"), outcomes
    assert float(outcomes[3].split()[2].rstrip("s")) > 23 * 3600  # the day's window, not the minute's


def test_members_mint_for_themselves_never_above_their_own_credential(api):
    viewer = issue_user(api, "default", "val", "viewer")
    own = create_token(api, token=viewer, name="val's script")
    assert own["role"] == "viewer" and own["kb_ids"] is None
    for role in ("editor", "admin"):
        stronger = api.request("POST", TOKENS, json={"name": "up", "role": role}, token=viewer)
        assert stronger.status_code == 403 and stronger.json()["code"] == "forbidden"
    admin_id = api.request("GET", "/api/v1/me").json()["data"]["user_id"]
    for_other = api.request("POST", TOKENS, json={"name": "x", "user_id": admin_id}, token=viewer)
    assert for_other.status_code == 403  # only admins mint for other members
