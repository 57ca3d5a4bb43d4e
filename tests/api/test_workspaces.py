"""Workspaces and members: creation, roles per workspace, last-admin protection, isolation (404)."""

from __future__ import annotations

from tests.api.test_tokens import issue_user

WS = "/api/v1/workspaces"


def me(api, token=None, workspace=None):
    headers = {"X-Workspace-ID": workspace} if workspace else {}
    return api.request("GET", "/api/v1/me", token=token, headers=headers)


def test_create_use_rename_and_delete_a_workspace(api):
    default_ws = me(api).json()["data"]["workspace_id"]
    created = api.request("POST", WS, json={"name": "research"})
    assert created.status_code == 201 and created.json()["data"]["role"] == "admin"
    ws = created.json()["data"]["id"]

    listed = api.request("GET", WS).json()
    assert {w["id"] for w in listed["data"]} == {default_ws, ws} and listed["pagination"]["total"] == 2
    assert api.request("GET", f"{WS}/{ws}").json()["data"]["name"] == "research"
    renamed = api.request("PATCH", f"{WS}/{ws}", json={"name": "research 2"})
    assert renamed.status_code == 200 and renamed.json()["data"]["name"] == "research 2"

    # the same token works in the new workspace through X-Workspace-ID; data stays apart
    kb = api.request("POST", "/api/v1/knowledge-bases", json={"name": "papers"}, headers={"X-Workspace-ID": ws})
    assert kb.status_code == 201 and kb.json()["data"]["workspace_id"] == ws
    assert api.request("GET", "/api/v1/knowledge-bases").json()["data"] == []
    assert api.request("GET", f"/api/v1/knowledge-bases/{kb.json()['data']['id']}").status_code == 404

    # a token cannot delete its own home workspace; from another workspace it can
    refused = api.request("DELETE", f"{WS}/{default_ws}")
    assert refused.status_code == 409 and refused.json()["data"] is None
    assert api.request("DELETE", f"{WS}/{ws}").status_code == 200
    assert api.request("GET", f"{WS}/{ws}").status_code == 404
    assert [w["id"] for w in api.request("GET", WS).json()["data"]] == [default_ws]
    gone = api.request("GET", "/api/v1/knowledge-bases", headers={"X-Workspace-ID": ws})
    assert gone.status_code == 404


def test_members_roles_and_the_last_admin(api):
    ws = api.request("POST", WS, json={"name": "team"}).json()["data"]["id"]
    me_admin = me(api).json()["data"]["user_id"]
    bob_token = issue_user(api, "default", "bob", "viewer")
    bob = me(api, bob_token).json()["data"]["user_id"]
    assert me(api, bob_token, ws).status_code == 404  # not a member yet: like an unknown workspace

    added = api.request("POST", f"{WS}/{ws}/members", json={"user_id": bob, "role": "editor"})
    assert added.status_code == 201 and added.json()["data"]["role"] == "editor"
    assert api.request("POST", f"{WS}/{ws}/members", json={"user_id": bob}).status_code == 409
    assert api.request("POST", f"{WS}/{ws}/members", json={"user_id": "usr_nobody"}).status_code == 404
    assert me(api, bob_token, ws).json()["data"]["role"] == "editor"
    assert me(api, bob_token).json()["data"]["role"] == "viewer"  # still a viewer at home
    # bob's role is judged per workspace: editor there, but members are admin business
    assert api.request("GET", f"{WS}/{ws}/members", token=bob_token).status_code == 403
    assert api.request("GET", f"{WS}/{ws}", token=bob_token).json()["data"]["role"] == "editor"

    members = api.request("GET", f"{WS}/{ws}/members").json()
    assert {(m["user_id"], m["role"]) for m in members["data"]} == {(me_admin, "admin"), (bob, "editor")}

    demote_last = api.request("PATCH", f"{WS}/{ws}/members/{me_admin}", json={"role": "editor"})
    assert demote_last.status_code == 409 and demote_last.json()["data"] is None
    assert api.request("DELETE", f"{WS}/{ws}/members/{me_admin}").status_code == 409
    assert api.request("PATCH", f"{WS}/{ws}/members/{bob}", json={"role": "admin"}).status_code == 200
    assert api.request("PATCH", f"{WS}/{ws}/members/{me_admin}", json={"role": "viewer"}).status_code == 200
    assert api.request("GET", f"{WS}/{ws}/members").status_code == 403  # now a viewer there
    # bob (now the admin there) removes us; our token no longer reaches that workspace
    assert api.request("DELETE", f"{WS}/{ws}/members/{me_admin}", token=bob_token).status_code == 200
    assert api.request("GET", f"{WS}/{ws}").status_code == 404
    assert api.request("DELETE", f"{WS}/{ws}/members/{bob}", token=bob_token).status_code == 409
    assert api.request("PATCH", f"{WS}/{ws}/members/{bob}", json={"role": "root"}, token=bob_token).status_code == 422


def test_removing_a_member_revokes_their_tokens_there(api):
    carol_token = issue_user(api, "default", "carol", "editor")
    carol = me(api, carol_token).json()["data"]["user_id"]
    removed = api.request("DELETE", f"{WS}/{me(api).json()['data']['workspace_id']}/members/{carol}")
    assert removed.status_code == 200
    assert [t["name"] for t in removed.json()["data"]] == ["carol's token"]
    assert me(api, carol_token).status_code == 401


def test_another_workspace_is_404_like_an_unknown_id(api):
    home = me(api).json()["data"]["workspace_id"]
    stranger = issue_user(api, "elsewhere", "mallory", "admin")
    for method, path, body in [("GET", f"{WS}/{home}", None), ("PATCH", f"{WS}/{home}", {"name": "mine"}),
                               ("DELETE", f"{WS}/{home}", None), ("GET", f"{WS}/{home}/members", None),
                               ("POST", f"{WS}/{home}/members", {"user_id": "usr_x"})]:
        theirs = api.request(method, path, json=body, token=stranger)
        unknown = api.request(method, path.replace(home, "ws_000000000000000000000000"), json=body, token=stranger)
        assert theirs.status_code == unknown.status_code == 404, (method, path)
        assert {k: v for k, v in theirs.json().items() if k != "request_id"} == {
            k: v for k, v in unknown.json().items() if k != "request_id"
        }
    assert me(api, stranger, home).status_code == 404
    assert home not in api.request("GET", WS, token=stranger).text


def test_only_admins_create_workspaces_and_limited_tokens_stay_home(api):
    viewer = issue_user(api, "default", "vera", "viewer")
    assert api.request("POST", WS, json={"name": "mine"}, token=viewer).status_code == 403
    kb = api.create_kb("scoped")
    limited = api.request("POST", "/api/v1/tokens", json={"name": "l", "kb_ids": [kb]}).json()["data"]["secret"]
    assert api.request("POST", WS, json={"name": "escape"}, token=limited).status_code == 403
    ws = api.request("POST", WS, json={"name": "second"}).json()["data"]["id"]
    assert me(api, limited, ws).status_code == 404
    assert [w["name"] for w in api.request("GET", WS, token=limited).json()["data"]] == ["default"]
