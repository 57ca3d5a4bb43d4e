"""Users and login over HTTP: passwords (Argon2id, never stored or shown), login tokens that expire,
one answer for every failed login, rate limits, logout, password changes, and admins' user management."""

from __future__ import annotations

import logging
import statistics
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine.db.models import User
from tests.api.conftest import Api, make_settings, open_api
from tests.api.test_tokens import assert_refused, create_token, issue_user

USERS = "/api/v1/users"
LOGIN = "/api/v1/login"
PASSWORD = "/api/v1/me/password"


def create_user(api: Api, name: str, password: str | None = None, role: str = "viewer", **kwargs: Any) -> dict:
    body: dict[str, Any] = {"name": name, "role": role}
    if password is not None:
        body["password"] = password
    response = api.request("POST", USERS, json=body, **kwargs)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def login(api: Api, username: str, password: str, **body: Any) -> Any:
    return api.client.post(LOGIN, json={"username": username, "password": password, **body})


def logged_in(api: Api, username: str, password: str, **body: Any) -> dict:
    response = login(api, username, password, **body)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def stored_hash(api: Api, name: str) -> str | None:
    async def read() -> str | None:
        async with api.services.sessions() as session:
            return await session.scalar(select(User.password_hash).where(User.name == name))

    return api.call(read)


def me(api: Api, token: str, workspace: str | None = None) -> Any:
    headers = {"X-Workspace-ID": workspace} if workspace else {}
    return api.request("GET", "/api/v1/me", token=token, headers=headers)


def test_login_gives_a_token_that_works_and_expires(tmp_path, embedder, caplog):
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path / "data", login_token_ttl_s=2.0)
    with open_api(settings, embedder) as api:
        home = me(api, api.token).json()["data"]["workspace_id"]
        created = create_user(api, "alice", "correct horse battery", role="editor")
        assert created["name"] == "alice" and created["role"] == "editor" and created["has_password"] is True
        assert "password" not in created and "correct horse" not in str(created)
        assert stored_hash(api, "alice").startswith("$argon2id$")

        before = time.time()
        session = logged_in(api, "alice", "correct horse battery")
        assert session["token"].startswith("rl_") and session["token_type"] == "bearer"
        assert session["user"] == {"id": created["id"], "name": "alice", "role": "editor"}
        assert session["workspace_id"] == home
        expires_at = datetime.fromisoformat(session["expires_at"])
        assert expires_at.tzinfo is not None and expires_at.utcoffset().total_seconds() == 0
        assert before + 2.0 <= expires_at.timestamp() <= time.time() + 3.0

        who = me(api, session["token"])
        assert who.status_code == 200
        data = who.json()["data"]
        assert data["user_id"] == created["id"] and data["role"] == "editor" and data["workspace_id"] == home
        time.sleep(max(0.0, expires_at.timestamp() - time.time()) + 0.05)
        assert_refused(me(api, session["token"]))
    assert "correct horse" not in caplog.text


def test_failed_logins_are_one_answer_after_the_same_work(api):
    create_user(api, "bob", "bobs password")
    create_user(api, "carl")  # no password: API tokens only
    wrong = login(api, "bob", "not bobs password")
    unknown = login(api, "nobody", "not bobs password")
    no_password = login(api, "carl", "not bobs password")
    for response in (wrong, unknown, no_password):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
    bodies = [{k: v for k, v in r.json().items() if k != "request_id"} for r in (wrong, unknown, no_password)]
    assert bodies[0] == bodies[1] == bodies[2]  # only the request id tells them apart
    assert bodies[0] == {"data": None, "error": "Unauthorized", "code": "unauthorized",
                         "message": "invalid username or password"}
    # an unknown user is verified against a dummy hash: no fast path that times out who exists
    def timed(name: str) -> float:
        start = time.perf_counter()
        assert login(api, name, "still wrong").status_code == 401
        return time.perf_counter() - start

    known = statistics.median(timed("bob") for _ in range(3))
    missing = statistics.median(timed("nobody") for _ in range(3))
    assert missing > known / 3, (known, missing)
    # malformed bodies are 4xx, never 500, and never a hint
    assert api.client.post(LOGIN, json={"username": "bob"}).status_code == 422
    assert api.client.post(LOGIN, json={"username": "bob", "password": "x", "role": "admin"}).status_code == 422
    as_text = api.client.post(LOGIN, content=b'{"username": "bob", "password": "x"}',
                              headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 415
    nul = api.client.post(LOGIN, content=b'{"username": "b\\u0000b", "password": "x"}',
                          headers={"Content-Type": "application/json"})
    assert nul.status_code == 422


def test_login_attempts_are_rate_limited_per_user_and_per_address(tmp_path, embedder):
    settings = make_settings(tmp_path / "data", login_rate_per_user_per_minute=3, login_rate_per_address_per_minute=6)
    with open_api(settings, embedder) as api:
        create_user(api, "dora", "doras password")
        assert [login(api, "dora", "wrong").status_code for _ in range(3)] == [401] * 3
        limited = login(api, "dora", "doras password")  # even the right password, for the rest of the minute
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["data"] is None and limited.json()["code"] == "rate_limited"
        # other users go on, until this address has used its budget
        assert [login(api, "eve", "guess").status_code for _ in range(2)] == [401, 401]
        by_address = login(api, "frank", "guess")
        assert by_address.status_code == 429 and int(by_address.headers["Retry-After"]) >= 1
        # API tokens are not affected
        assert me(api, api.token).status_code == 200


def test_default_login_limits_and_lifetime():
    from engine.settings import Settings

    defaults = Settings.from_env({})
    assert defaults.login_token_ttl_s == 12 * 3600
    assert (defaults.login_rate_per_user_per_minute, defaults.login_rate_per_address_per_minute) == (10, 30)
    assert Settings.from_env({"RAGLINE_LOGIN_TOKEN_TTL_S": "60"}).login_token_ttl_s == 60


def test_logout_revokes_the_token_in_use(api):
    create_user(api, "gina", "ginas password")
    first = logged_in(api, "gina", "ginas password")["token"]
    second = logged_in(api, "gina", "ginas password")["token"]
    out = api.request("POST", "/api/v1/logout", token=first)
    assert out.status_code == 200 and out.json()["data"] is None
    assert_refused(me(api, first))
    assert_refused(api.request("POST", "/api/v1/logout", token=first))
    assert me(api, second).status_code == 200  # another session of the same user stays
    # any API token logs itself out; the audit log says why
    token = create_token(api, name="script")
    assert api.request("POST", "/api/v1/logout", token=token["secret"]).status_code == 200
    assert_refused(me(api, token["secret"]))
    audit = api.request("GET", f"/api/v1/tokens/{token['id']}/audit").json()["data"]
    assert audit[0]["action"] == "revoked" and audit[0]["detail"] == {"reason": "logout"}
    assert me(api, api.token).status_code == 200


def test_password_change_flow(api):
    hank = create_user(api, "hank", role="editor")
    assert hank["has_password"] is False and stored_hash(api, "hank") is None
    token = create_token(api, user_id=hank["id"], name="hank's")["secret"]  # capped at the issuer's role: admin
    assert login(api, "hank", "anything at all").status_code == 401

    # a token weaker than hank (a role cap below his role) cannot set a first password: a login would escalate
    weak = create_token(api, user_id=hank["id"], role="viewer", name="weak")["secret"]
    refused = api.request("PUT", PASSWORD, json={"new_password": "hanks first password"}, token=weak)
    assert refused.status_code == 403

    first = api.request("PUT", PASSWORD, json={"new_password": "hanks first password"}, token=token)
    assert first.status_code == 200, first.text
    assert stored_hash(api, "hank").startswith("$argon2id$")
    assert logged_in(api, "hank", "hanks first password")["user"]["role"] == "editor"

    for body, status in [
        ({"new_password": "hanks second password"}, 422),  # current_password required now
        ({"new_password": "hanks second password", "current_password": "not it"}, 403),
        ({"new_password": "short", "current_password": "hanks first password"}, 422),
        ({"new_password": "x" * 1025, "current_password": "hanks first password"}, 422),
        ({"new_password": "hanks second password", "current_password": "hanks first password", "x": 1}, 422),
    ]:
        response = api.request("PUT", PASSWORD, json=body, token=weak)
        assert response.status_code == status, (body, response.text)
        assert response.json()["data"] is None
    # with the current password even the weak token may change it (its holder could log in anyway)
    changed = api.request("PUT", PASSWORD, json={"new_password": "hanks second password",
                                                  "current_password": "hanks first password"}, token=weak)
    assert changed.status_code == 200, changed.text
    assert login(api, "hank", "hanks first password").status_code == 401
    assert logged_in(api, "hank", "hanks second password")["user"]["id"] == hank["id"]
    assert "hanks second password" not in api.request("GET", f"{USERS}/{hank['id']}").text


def test_users_crud(api):
    admin_id = me(api, api.token).json()["data"]["user_id"]
    listed = api.request("GET", USERS).json()
    assert [u["id"] for u in listed["data"]] == [admin_id] and listed["pagination"]["total"] == 1
    assert listed["data"][0]["role"] == "admin" and listed["data"][0]["has_password"] is False

    ivy = create_user(api, "ivy", "ivys password", role="viewer")
    jon = create_user(api, "jon", role="editor")
    page = api.request("GET", USERS, params={"limit": 2, "page": 2}).json()
    assert [u["id"] for u in page["data"]] == [jon["id"]]
    assert page["pagination"] == {"page": 2, "limit": 2, "total": 3, "total_pages": 2}
    got = api.request("GET", f"{USERS}/{ivy['id']}")
    assert got.status_code == 200 and got.json()["data"] == ivy

    # names are unique: creating or renaming onto a taken name is 409
    duplicate = api.request("POST", USERS, json={"name": "ivy", "role": "viewer"})
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "conflict"
    assert api.request("PATCH", f"{USERS}/{jon['id']}", json={"name": "ivy"}).status_code == 409
    for body in [{"name": ""}, {"name": "x", "role": "root"}, {"name": "x", "password": "short"},
                 {"name": "x", "id": "usr_mine"}, {"name": "x", "password_hash": "$argon2id$"}]:
        assert api.request("POST", USERS, json=body).status_code == 422, body

    # rename, role here, password set and removed
    patched = api.request("PATCH", f"{USERS}/{jon['id']}", json={"name": "jonathan", "role": "admin",
                                                                  "password": "jonathans password"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"] | {"created_at": None} == {
        "id": jon["id"], "name": "jonathan", "role": "admin", "has_password": True, "created_at": None}
    assert logged_in(api, "jonathan", "jonathans password")["user"]["role"] == "admin"
    cleared = api.request("PATCH", f"{USERS}/{jon['id']}", json={"password": None})
    assert cleared.status_code == 200 and cleared.json()["data"]["has_password"] is False
    assert login(api, "jonathan", "jonathans password").status_code == 401
    assert api.request("PATCH", f"{USERS}/{jon['id']}", json={"role": "editor"}).json()["data"]["role"] == "editor"

    # deleting removes the only membership, and so the user: their tokens die, the name is free again
    ivy_token = logged_in(api, "ivy", "ivys password")["token"]
    assert api.request("DELETE", f"{USERS}/{ivy['id']}").status_code == 200
    assert api.request("GET", f"{USERS}/{ivy['id']}").status_code == 404
    assert api.request("DELETE", f"{USERS}/{ivy['id']}").status_code == 404
    assert_refused(me(api, ivy_token))
    assert stored_hash(api, "ivy") is None and login(api, "ivy", "ivys password").status_code == 401
    assert create_user(api, "ivy")["id"] != ivy["id"]
    assert api.request("GET", f"{USERS}/usr_nobody").status_code == 404


def test_the_last_admin_stays(api):
    admin_id = me(api, api.token).json()["data"]["user_id"]
    for method, body in [("PATCH", {"role": "editor"}), ("DELETE", None)]:
        response = api.request(method, f"{USERS}/{admin_id}", json=body)
        assert response.status_code == 409 and response.json()["code"] == "conflict", response.text
    assert api.request("GET", f"{USERS}/{admin_id}").json()["data"]["role"] == "admin"
    # with a second admin, the first may step down
    create_user(api, "kim", "kims password", role="admin")
    stepped = api.request("PATCH", f"{USERS}/{admin_id}", json={"role": "editor"})
    assert stepped.status_code == 200 and stepped.json()["data"]["role"] == "editor"
    assert api.request("GET", USERS).status_code == 403  # the bootstrap token now acts as an editor


def test_outsiders_and_weaker_roles_see_nothing(api):
    lea = create_user(api, "lea", "leas password")
    outsider = issue_user(api, "elsewhere", "olga", "admin")
    for method, body in [("GET", None), ("PATCH", {"name": "mine"}), ("DELETE", None)]:
        response = api.request(method, f"{USERS}/{lea['id']}", json=body, token=outsider)
        assert response.status_code == 404, (method, response.text)
        assert lea["id"] not in response.text
    theirs = api.request("GET", USERS, token=outsider).json()["data"]
    assert [u["name"] for u in theirs] == ["olga"]
    editor = issue_user(api, "default", "ed", "editor")
    assert api.request("GET", USERS, token=editor).status_code == 403
    assert api.request("POST", USERS, json={"name": "x"}, token=editor).status_code == 403
    assert api.request("GET", f"{USERS}/{lea['id']}", token=editor).status_code == 403
    # a token limited to knowledge bases cannot make users (a login would hand out an unlimited token)
    limited = create_token(api, kb_ids=[api.create_kb("kb")], name="limited")["secret"]
    assert api.request("POST", USERS, json={"name": "x"}, token=limited).status_code == 403


def test_a_new_user_logs_in_and_sees_only_their_workspace(api):
    home = me(api, api.token).json()["data"]["workspace_id"]
    api.create_kb("home handbook")
    team = api.request("POST", "/api/v1/workspaces", json={"name": "team"}).json()["data"]["id"]
    in_team = {"X-Workspace-ID": team}
    max_ = create_user(api, "max", "maxs password", role="editor", headers=in_team)
    assert [u["name"] for u in api.request("GET", USERS, headers=in_team).json()["data"]] == ["admin", "max"]
    assert api.request("GET", f"{USERS}/{max_['id']}").status_code == 404  # not a member at home

    session = logged_in(api, "max", "maxs password")
    assert session["workspace_id"] == team and session["user"]["role"] == "editor"
    token = session["token"]
    assert [w["id"] for w in api.request("GET", "/api/v1/workspaces", token=token).json()["data"]] == [team]
    assert api.request("GET", "/api/v1/knowledge-bases", token=token).json()["data"] == []
    assert api.create_kb("team notes", token=token)
    assert me(api, token, workspace=home).status_code == 404
    assert api.request("GET", USERS, token=token).status_code == 403
    # asking for a workspace the user is not in is 404; once added through the members route, it works
    assert login(api, "max", "maxs password", workspace_id=home).status_code == 404
    added = api.request("POST", f"/api/v1/workspaces/{home}/members", json={"user_id": max_["id"], "role": "viewer"})
    assert added.status_code == 201, added.text
    at_home = logged_in(api, "max", "maxs password", workspace_id=home)
    assert at_home["workspace_id"] == home and at_home["user"]["role"] == "viewer"
    assert [k["name"] for k in api.request("GET", "/api/v1/knowledge-bases", token=at_home["token"]).json()["data"]] \
        == ["home handbook"]
    # the oldest membership stays the default
    assert logged_in(api, "max", "maxs password")["workspace_id"] == team
    # removed from team, max is still a user (of home): team tokens die, home ones live
    assert api.request("DELETE", f"{USERS}/{max_['id']}", headers=in_team).status_code == 200
    assert_refused(me(api, token))
    assert me(api, at_home["token"]).status_code == 200
    assert logged_in(api, "max", "maxs password")["workspace_id"] == home


def test_an_admin_changes_name_and_password_only_where_they_administer_everything(api):
    nia = create_user(api, "nia", "nias password")
    outsider = issue_user(api, "elsewhere", "olga", "admin")
    joined = api.request("GET", "/api/v1/workspaces", token=outsider).json()["data"][0]["id"]
    added = api.request("POST", f"/api/v1/workspaces/{joined}/members", json={"user_id": nia["id"], "role": "admin"},
                        token=outsider)
    assert added.status_code == 201, added.text
    # nia is an admin elsewhere: our admin must not take her account over there
    for body in [{"password": "taken over now"}, {"name": "not nia"}]:
        assert api.request("PATCH", f"{USERS}/{nia['id']}", json=body).status_code == 403, body
    assert api.request("PATCH", f"{USERS}/{nia['id']}", json={"role": "editor"}).status_code == 200  # ours to set
    # deleting here only removes the membership: she stays a user elsewhere
    assert api.request("DELETE", f"{USERS}/{nia['id']}").status_code == 200
    assert logged_in(api, "nia", "nias password")["workspace_id"] == joined
    assert api.request("POST", USERS, json={"name": "nia"}).status_code == 409  # her name stays taken
