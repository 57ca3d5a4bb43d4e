"""Function- and object-level authorisation over EVERY route of the app (OWASP API1, API5, API9).

``ROUTES`` lists each (method, path) of the app's route table with its minimum role (or PUBLIC) and
how to send a valid request. Each route is called as anonymous, viewer, editor, admin and as the
admin of another workspace (the outsider):

* anonymous -> 401; below the minimum role -> 403; at or above it -> 2xx (the request is valid);
* the outsider -> 404 when the path names an object of the first workspace, and no response to the
  outsider ever carries an id of the first workspace.

A route missing from ``ROUTES`` fails ``test_every_route_is_in_the_matrix``: add one line for it.
Path parameters are built by name in ``PARAMS`` (a fresh object per request, so destructive routes
cannot disturb the others); add a builder there for a new kind of object.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from litestar.routes import HTTPRoute

from tests.api.conftest import Api, make_settings, open_api
from tests.api.test_tokens import issue_user

ROLES = ("viewer", "editor", "admin")
CALLERS = ("anonymous", *ROLES, "outsider")
_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


@dataclass
class World:
    """One app with a first workspace (viewer, editor, admin, data) and an outsider's workspace."""

    api: Api
    tokens: dict[str, str]
    user_ids: dict[str, str] = field(default_factory=dict)
    first_ids: set[str] = field(default_factory=set)  # every id of the first workspace's objects

    def call(self, caller: str, method: str, path: str, **kwargs: Any) -> Any:
        if method == "WEBSOCKET":
            return ws_handshake(self, caller, path)
        if caller == "anonymous":
            return self.api.client.request(method, path, **kwargs)
        return self.api.request(method, path, token=self.tokens[caller], **kwargs)

    def created(self, response: Any) -> str:
        assert response.status_code == 201, response.text
        ident = str(response.json()["data"]["id"])
        self.first_ids.add(ident)
        return ident

    def new_kb(self) -> str:
        return self.created(self.call("admin", "POST", "/api/v1/knowledge-bases", json={"name": unique("kb")}))

    def new_file(self, kb_id: str) -> str:
        text = f"Llamas graze in field {unique('f')} of the quarterly llama census.".encode()
        file_id = self.created(self.call("admin", "POST", f"/api/v1/knowledge-bases/{kb_id}/files",
                                         files={"file": (unique("notes") + ".txt", text)}))
        assert self.api.wait_ingested(kb_id, file_id)["status"] == "ready"
        return file_id

    def new_token(self, owner: str) -> str:
        return self.created(self.call(owner, "POST", "/api/v1/tokens", json={"name": unique("tok")}))

    def new_agent(self) -> str:
        return self.created(self.call("admin", "POST", "/api/v1/agents", json={"name": unique("agent")}))

    def new_session(self, owner: str) -> str:
        return self.created(self.call(owner, "POST", "/api/v1/chat/sessions", json={"title": unique("chat")}))

    def new_run(self, owner: str) -> str:
        """A finished assistant run (the built-in extractive model needs no provider)."""
        started = self.call(owner, "POST", "/api/v1/assistant/messages", json={"message": "llama census"})
        assert started.status_code == 202, started.text
        run_id = str(started.json()["data"]["run_id"])
        self.first_ids |= {run_id, str(started.json()["data"]["session_id"])}
        assert self.call(owner, "GET", f"/api/v1/executions/{run_id}/stream").status_code == 200  # ends with the run
        return run_id

    def new_workspace(self) -> str:
        """A workspace where the viewer, editor and admin hold their roles (deleting it harms nothing)."""
        ws = self.created(self.call("admin", "POST", "/api/v1/workspaces", json={"name": unique("ws")}))
        for role in ("viewer", "editor"):
            added = self.call("admin", "POST", f"/api/v1/workspaces/{ws}/members",
                              json={"user_id": self.user_ids[role], "role": role})
            assert added.status_code == 201, added.text
        return ws

    def new_user(self) -> str:
        """A user of no workspace of ours (lives in a scratch workspace)."""
        secret = issue_user(self.api, "scratch", unique("user"), "viewer")
        user_id = str(self.api.request("GET", "/api/v1/me", token=secret).json()["data"]["user_id"])
        self.first_ids.add(user_id)
        return user_id

    def new_account(self) -> str:
        """A user made through POST /users: a member of the first workspace only."""
        created = self.call("admin", "POST", "/api/v1/users", json={"name": unique("user"), "role": "viewer"})
        return self.created(created)

    def new_member(self, workspace_id: str) -> str:
        user_id = self.new_user()
        added = self.call("admin", "POST", f"/api/v1/workspaces/{workspace_id}/members",
                          json={"user_id": user_id, "role": "viewer"})
        assert added.status_code == 201, added.text
        return user_id


class Handshake:
    """A WebSocket handshake's outcome, shaped like a response: accepted is 200 (text: the first message); a close
    before accepting with 4000 + status is that status, with an error body made of the close reason."""

    def __init__(self, status_code: int, text: str) -> None:
        self.status_code, self.text = status_code, text

    def json(self) -> Any:
        return {"data": None, "error": self.text or "refused", "message": self.text or "refused"}


def ws_handshake(world: World, caller: str, path: str) -> Handshake:
    from litestar.exceptions import WebSocketDisconnect

    headers = {} if caller == "anonymous" else {"Authorization": f"Bearer {world.tokens[caller]}"}
    try:
        with world.api.client.websocket_connect(path, headers=headers) as socket:
            return Handshake(200, socket.receive_text())
    except WebSocketDisconnect as exc:
        return Handshake(exc.code - 4000 if exc.code >= 4000 else 500, str(exc.detail))


Params = dict[str, str]
Builder = Callable[[World, str, Params], Any]

# path parameter name -> a fresh object of the first workspace (``caller`` may own it)
PARAMS: dict[str, Builder] = {
    "kb_id": lambda w, caller, p: w.new_kb(),
    "file_id": lambda w, caller, p: w.new_file(p["kb_id"]),
    # members manage their own tokens; anonymous and the outsider aim at the first workspace admin's
    "token_id": lambda w, caller, p: w.new_token(caller if caller in ROLES else "admin"),
    "workspace_id": lambda w, caller, p: w.new_workspace(),
    "agent_id": lambda w, caller, p: w.new_agent(),
    "session_id": lambda w, caller, p: w.new_session(caller if caller in ROLES else "admin"),
    "run_id": lambda w, caller, p: w.new_run(caller if caller in ROLES else "admin"),
    # /workspaces/{workspace_id}/members/{user_id}: a member there; /users/{user_id}: of the first workspace
    "user_id": lambda w, caller, p: w.new_member(p["workspace_id"]) if "workspace_id" in p else w.new_account(),
    "trigger_id": lambda w, caller, p: new_webhook_trigger(w),
    "environment_id": lambda w, caller, p: w.created(
        w.call("admin", "POST", "/api/v1/environments", json={"name": unique("env")})),
    "variable_id": lambda w, caller, p: w.created(
        w.call("admin", "POST", "/api/v1/variables", json={"name": unique("VAR").replace("-", "_"), "value": "v"})),
    "model_id": lambda w, caller, p: w.created(
        w.call("admin", "POST", "/api/v1/models", json={"name": unique("model"), "model": "openai/x"})),
    # system models are global: never counted as the first workspace's objects
    "system_model_id": lambda w, caller, p: w.call(
        "admin", "POST", "/api/v1/system-models", json={"name": unique("sys"), "model": "openai/x"},
    ).json()["data"]["id"],
    "path": lambda w, caller, p: new_webhook_trigger(w, path_only=True),
    "prompt_id": lambda w, caller, p: new_prompt(w)[0],
    "number": lambda w, caller, p: "1",  # /prompts/{prompt_id}/versions/{number}: its first version
    "key": lambda w, caller, p: new_prompt(w)[1],  # /sdk/prompts/{key}
    # a public address passes the SSRF guard without DNS; saving a server never connects to it
    "mcp_server_id": lambda w, caller, p: w.created(w.call("admin", "POST", "/api/v1/mcp-servers", json={
        "name": unique("mcp"), "url": "https://93.184.216.34/mcp", "token": "t", "allowed_tools": ["weather"]})),
    "automation_id": lambda w, caller, p: w.created(w.call("admin", "POST", "/api/v1/automations", json={
        "name": unique("auto"), "event_types": ["census.*"], "action": "agent", "agent_id": w.new_agent()})),
    "subscription_id": lambda w, caller, p: w.created(w.call("admin", "POST", "/api/v1/subscriptions", json={
        "name": unique("sub"), "url": "https://93.184.216.34/hook", "event_types": ["never.sent"]})),
    "workflow_id": lambda w, caller, p: w.created(w.call("admin", "POST", "/api/v1/workflows", json={
        "name": unique("wf"), "definition": WORKFLOW})),
    "workflow_step_id": lambda w, caller, p: w.created(w.call("admin", "POST", "/api/v1/workflow-steps", json={
        "name": unique("wfs"), "kind": "transform", "config": {"template": "{{ input.n }}"}})),
    "golden_set_id": lambda w, caller, p: w.created(w.call(
        "admin", "POST", f"/api/v1/knowledge-bases/{p['kb_id']}/golden-sets", json=golden_set_body())),
    "evaluation_id": lambda w, caller, p: w.created(w.call(
        "admin", "POST", f"/api/v1/knowledge-bases/{p['kb_id']}/evaluations", json=evaluation_body())),
    "switch_id": lambda w, caller, p: new_ready_switch(w, p["kb_id"]),
}
WEBHOOK_SECRETS: dict[str, str] = {}  # webhook path -> its signing secret (to send valid deliveries)


def new_webhook_trigger(w: World, *, path_only: bool = False) -> str:
    created = w.call("admin", "POST", "/api/v1/triggers",
                     json={"name": unique("trg"), "agent_id": w.new_agent(), "type": "webhook"})
    ident = w.created(created)
    path = created.json()["data"]["webhook_url"].rsplit("/", 1)[1]
    WEBHOOK_SECRETS[path] = created.json()["data"]["webhook_secret"]
    return path if path_only else ident


# a workflow that needs no model: one transform step over its input
WORKFLOW = {"steps": [{"id": "t", "kind": "transform", "template": {"n": "{{ input.n }}"}}]}


def new_prompt(w: World) -> tuple[str, str]:
    """A prompt of the first workspace with versions 1 and 2 published (2 live in the default environment)."""
    key = unique("prompt")
    ident = w.created(w.call("admin", "POST", "/api/v1/prompts", json={
        "key": key, "messages": [{"role": "user", "content": "Hello {{ who }}"}],
        "variables": [{"name": "who", "default": "llama"}]}))  # fmt: skip
    for _ in range(2):
        w.created(w.call("admin", "POST", f"/api/v1/prompts/{ident}/publish", json={"note": "census"}))
    return ident, key


def new_trigger_body(w: World, caller: str, p: Params) -> dict[str, Any]:
    """A valid body for the caller: an agent of the caller's own workspace (the outsider's is its own)."""
    owner = "outsider" if caller == "outsider" else "admin"
    agent = w.call(owner, "POST", "/api/v1/agents", json={"name": unique("agent")}).json()["data"]["id"]
    return {"json": {"name": unique("trg"), "agent_id": agent, "type": "manual"}}


def new_automation_body(w: World, caller: str, p: Params) -> dict[str, Any]:
    """An automation of an agent of the caller's own workspace (the outsider's is its own)."""
    owner = "outsider" if caller == "outsider" else "admin"
    agent = w.call(owner, "POST", "/api/v1/agents", json={"name": unique("agent")}).json()["data"]["id"]
    return {"json": {"name": unique("auto"), "event_types": ["census.*"], "action": "agent", "agent_id": agent}}


def signed_delivery(w: World, caller: str, p: Params) -> dict[str, Any]:
    from engine.webhooks import sign_headers

    body = b'{"title": "llama census"}'
    headers = sign_headers(WEBHOOK_SECRETS[p["path"]], unique("msg"), body)
    return {"content": body, "headers": {**headers, "Content-Type": "application/json"}}


def login_body(w: World, caller: str, p: Params) -> dict[str, Any]:
    """Credentials of a user the outsider made (so that no answer carries an id of the first workspace)."""
    name, password = unique("login"), unique("a long password")
    made = w.call("outsider", "POST", "/api/v1/users", json={"name": name, "password": password, "role": "viewer"})
    assert made.status_code == 201, made.text
    return {"json": {"username": name, "password": password}}


def own_fresh_token(w: World, caller: str, p: Params) -> dict[str, Any]:
    """Logout revokes the token in use: each caller logs out a fresh token of its own, never the world's."""
    if caller == "anonymous":
        return {}
    issued = w.call(caller, "POST", "/api/v1/tokens", json={"name": unique("session")})
    assert issued.status_code == 201, issued.text
    return {"headers": {"Authorization": f"Bearer {issued.json()['data']['secret']}"}}


PASSWORDS: dict[str, str] = {}  # caller -> the password it set last (PUT /me/password needs the current one)


def new_password(w: World, caller: str, p: Params) -> dict[str, Any]:
    body = {"new_password": unique("a long password")}
    if caller in PASSWORDS:
        body["current_password"] = PASSWORDS[caller]
    if caller != "anonymous":
        PASSWORDS[caller] = body["new_password"]
    return {"json": body}


def own_session_query(w: World, caller: str, p: Params) -> dict[str, Any]:
    """?session_id= of a session the caller opened (the outsider's own lives in its own workspace)."""
    if caller == "anonymous":
        return {"params": {"session_id": "chat_none"}}
    made = w.call(caller, "POST", "/api/v1/chat/sessions", json={"title": unique("chat")})
    assert made.status_code == 201, made.text
    if caller != "outsider":
        w.first_ids.add(made.json()["data"]["id"])
    return {"params": {"session_id": made.json()["data"]["id"]}}


def golden_set_body() -> dict[str, Any]:
    return {"name": unique("golden"), "queries": [{"query": "llama census", "files": ["census.txt"]}]}


def evaluation_body() -> dict[str, Any]:
    return {"queries": [{"query": "llama census", "files": {"census.txt": 2}}], "modes": ["sparse"]}


def new_ready_switch(w: World, kb_id: str) -> str:
    """An index switch of an (empty, so at once ready) knowledge base that waits for its swap."""
    made = w.call("admin", "POST", f"/api/v1/knowledge-bases/{kb_id}/index-switches",
                  json={"chunk_tokens": 150, "auto_swap": False})  # fmt: skip
    assert made.status_code == 202, made.text
    ident = str(made.json()["data"]["id"])
    w.first_ids.add(ident)
    for _ in range(300):
        state = w.call("admin", "GET", f"/api/v1/knowledge-bases/{kb_id}/index-switches/{ident}").json()["data"]
        if state["status"] == "ready":
            return ident
        time.sleep(0.05)
    raise AssertionError(f"switch {ident} did not get ready: {state}")


def golden_upload(w: World, caller: str, p: Params) -> dict[str, Any]:
    line = b'{"query": "llama census", "files": ["census.txt"]}\n'
    return {"files": {"file": ("golden.jsonl", line)}, "data": {"name": unique("golden")}}


def json_body(make: Callable[[World, Params], Any]) -> Builder:
    return lambda w, caller, p: {"json": make(w, p)}


def named(prefix: str) -> Builder:
    return json_body(lambda w, p: {"name": unique(prefix)})


def upload(w: World, caller: str, p: Params) -> dict[str, Any]:
    return {"files": {"file": (unique("up") + ".txt", f"alpaca notes {unique('u')}".encode())}}


@dataclass(frozen=True)
class Row:
    role: str | None  # minimum role; None: public
    send: Builder | None = None  # extra request kwargs (json=..., files=...)
    outsider: str | None = None  # what the outsider gets when it differs from the rule (global objects)


PUBLIC = Row(None)


def viewer(send: Builder | None = None) -> Row:
    return Row("viewer", send)


def editor(send: Builder | None = None) -> Row:
    return Row("editor", send)


def admin(send: Builder | None = None) -> Row:
    return Row("admin", send)


SEARCH = json_body(lambda w, p: {"query": "llama census", "top_k": 5})
RUN = json_body(lambda w, p: {"input": "llama census"})
MESSAGE = json_body(lambda w, p: {"content": "how many llamas?"})
ASK = json_body(lambda w, p: {"message": "how many llamas?"})

ROUTES: dict[tuple[str, str], Row] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/"): PUBLIC,  # the web console's page (api/routes/console.py); every call it makes needs a token
    # knowledge bases and files
    ("POST", "/api/v1/knowledge-bases"): editor(named("kb")),
    ("GET", "/api/v1/knowledge-bases"): viewer(),
    ("GET", "/api/v1/knowledge-bases/{kb_id}"): viewer(),
    ("PATCH", "/api/v1/knowledge-bases/{kb_id}"): editor(named("kb")),
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}"): editor(),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/files"): editor(upload),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/files"): viewer(),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/files/{file_id}"): viewer(),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/files/{file_id}/download"): viewer(),
    ("PATCH", "/api/v1/knowledge-bases/{kb_id}/files/{file_id}"): editor(
        json_body(lambda w, p: {"tags": ["census"], "metadata": {"region": "andes"}})
    ),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/files/{file_id}/reprocess"): editor(),
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}/files/{file_id}"): editor(),
    # golden sets and evaluations of a knowledge base (editors run and write, viewers read the history)
    ("POST", "/api/v1/knowledge-bases/{kb_id}/golden-sets"): editor(json_body(lambda w, p: golden_set_body())),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/golden-sets/upload"): editor(golden_upload),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/golden-sets"): viewer(),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/golden-sets/{golden_set_id}"): viewer(),
    ("PATCH", "/api/v1/knowledge-bases/{kb_id}/golden-sets/{golden_set_id}"): editor(
        json_body(lambda w, p: {"description": "census checks"})),
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}/golden-sets/{golden_set_id}"): editor(),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/evaluations"): editor(json_body(lambda w, p: evaluation_body())),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/evaluations"): viewer(),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/evaluations/{evaluation_id}"): viewer(),
    # a knowledge base's index and switching it without downtime
    ("GET", "/api/v1/embedders"): viewer(),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/index"): viewer(),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/index-switches"): editor(json_body(lambda w, p: {"chunk_tokens": 150})),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/index-switches"): viewer(),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/index-switches/{switch_id}"): viewer(),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/index-switches/{switch_id}/swap"): editor(),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/index-switches/{switch_id}/cancel"): editor(),
    # search
    ("POST", "/api/v1/search"): viewer(SEARCH),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/search"): viewer(SEARCH),
    # tokens (members manage their own; the builder hands each caller a token of their own)
    ("POST", "/api/v1/tokens"): viewer(named("tok")),
    ("GET", "/api/v1/tokens"): viewer(),
    ("GET", "/api/v1/tokens/validate"): viewer(),
    ("GET", "/api/v1/tokens/audit"): admin(),
    ("GET", "/api/v1/tokens/{token_id}"): viewer(),
    ("PATCH", "/api/v1/tokens/{token_id}"): viewer(named("tok")),
    ("DELETE", "/api/v1/tokens/{token_id}"): viewer(),
    ("POST", "/api/v1/tokens/{token_id}/revoke"): viewer(),
    ("POST", "/api/v1/tokens/{token_id}/renew"): viewer(json_body(lambda w, p: {"expires_in_days": 7})),
    ("POST", "/api/v1/tokens/{token_id}/regenerate"): viewer(),
    ("GET", "/api/v1/tokens/{token_id}/audit"): viewer(),
    # workspaces and members
    ("GET", "/api/v1/me"): viewer(),
    ("GET", "/api/v1/workspaces"): viewer(),
    ("POST", "/api/v1/workspaces"): admin(named("ws")),
    ("GET", "/api/v1/workspaces/{workspace_id}"): viewer(),
    ("PATCH", "/api/v1/workspaces/{workspace_id}"): admin(named("ws")),
    ("DELETE", "/api/v1/workspaces/{workspace_id}"): admin(),
    ("GET", "/api/v1/workspaces/{workspace_id}/members"): admin(),
    ("POST", "/api/v1/workspaces/{workspace_id}/members"): admin(
        json_body(lambda w, p: {"user_id": w.new_user(), "role": "viewer"})),
    ("PATCH", "/api/v1/workspaces/{workspace_id}/members/{user_id}"): admin(json_body(lambda w, p: {"role": "editor"})),
    ("DELETE", "/api/v1/workspaces/{workspace_id}/members/{user_id}"): admin(),
    # users and login (users are managed by the admins of a workspace)
    ("POST", "/api/v1/login"): Row(None, login_body),
    ("POST", "/api/v1/logout"): viewer(own_fresh_token),
    ("PUT", "/api/v1/me/password"): viewer(new_password),
    ("GET", "/api/v1/users"): admin(),
    ("POST", "/api/v1/users"): admin(json_body(lambda w, p: {"name": unique("user"), "role": "viewer"})),
    ("GET", "/api/v1/users/{user_id}"): admin(),
    ("PATCH", "/api/v1/users/{user_id}"): admin(json_body(lambda w, p: {"name": unique("user"), "role": "editor"})),
    ("PUT", "/api/v1/users/{user_id}"): admin(json_body(lambda w, p: {"name": unique("user"), "role": "editor"})),
    ("DELETE", "/api/v1/users/{user_id}"): admin(),
    # agents and their runs
    ("POST", "/api/v1/agents"): editor(named("agent")),
    ("GET", "/api/v1/agents"): viewer(),
    ("GET", "/api/v1/agents/{agent_id}"): viewer(),
    ("PATCH", "/api/v1/agents/{agent_id}"): editor(named("agent")),
    ("PUT", "/api/v1/agents/{agent_id}"): editor(named("agent")),
    ("DELETE", "/api/v1/agents/{agent_id}"): editor(),
    ("POST", "/api/v1/agents/{agent_id}/run"): viewer(RUN),
    ("POST", "/api/v1/agents/{agent_id}/run/stream"): viewer(RUN),
    # chat sessions and the assistant
    ("POST", "/api/v1/chat/sessions"): viewer(json_body(lambda w, p: {"title": unique("chat")})),
    ("GET", "/api/v1/chat/sessions"): viewer(),
    ("GET", "/api/v1/chat/sessions/{session_id}"): viewer(),
    ("DELETE", "/api/v1/chat/sessions/{session_id}"): viewer(),
    ("GET", "/api/v1/chat/sessions/{session_id}/messages"): viewer(),
    ("POST", "/api/v1/chat/sessions/{session_id}/messages"): viewer(MESSAGE),
    ("POST", "/api/v1/chat/sessions/{session_id}/messages/stream"): viewer(MESSAGE),
    ("POST", "/api/v1/assistant/chat"): viewer(ASK),
    ("POST", "/api/v1/assistant/messages"): viewer(ASK),
    ("GET", "/api/v1/assistant/chat/history"): viewer(own_session_query),
    # executions (runs)
    ("GET", "/api/v1/executions"): viewer(),
    ("GET", "/api/v1/runs"): viewer(),
    ("GET", "/api/v1/executions/{run_id}"): viewer(),
    ("GET", "/api/v1/executions/{run_id}/events"): viewer(),
    ("GET", "/api/v1/executions/{run_id}/stream"): viewer(),
    ("POST", "/api/v1/executions/{run_id}/cancel"): viewer(),
    # triggers, callbacks and the public (signed) webhook receiver
    ("POST", "/api/v1/triggers"): editor(new_trigger_body),
    ("GET", "/api/v1/triggers"): viewer(),
    ("GET", "/api/v1/triggers/{trigger_id}"): viewer(),
    ("PATCH", "/api/v1/triggers/{trigger_id}"): editor(named("trg")),
    ("DELETE", "/api/v1/triggers/{trigger_id}"): editor(),
    ("POST", "/api/v1/triggers/{trigger_id}/execute"): editor(RUN),
    ("POST", "/api/v1/triggers/{trigger_id}/rotate-secret"): editor(),
    ("GET", "/api/v1/triggers/{trigger_id}/deliveries"): viewer(),
    ("GET", "/api/v1/executions/{run_id}/callbacks"): viewer(),
    ("POST", "/api/v1/agents/{agent_id}/callback-secret"): editor(),
    ("POST", "/api/webhook/{path}"): Row(None, signed_delivery),
    # configuration: environments, variables, models (system models: only the first workspace's admins write)
    ("GET", "/api/v1/environments"): viewer(),
    ("POST", "/api/v1/environments"): admin(named("env")),
    ("GET", "/api/v1/environments/{environment_id}"): viewer(),
    ("PATCH", "/api/v1/environments/{environment_id}"): admin(json_body(lambda w, p: {"description": "d"})),
    ("DELETE", "/api/v1/environments/{environment_id}"): admin(),
    ("GET", "/api/v1/variables"): viewer(),
    ("POST", "/api/v1/variables"): editor(
        json_body(lambda w, p: {"name": unique("V").replace("-", "_"), "value": "x"})),
    ("GET", "/api/v1/variables/{variable_id}"): viewer(),
    ("PATCH", "/api/v1/variables/{variable_id}"): editor(json_body(lambda w, p: {"value": "y"})),
    ("DELETE", "/api/v1/variables/{variable_id}"): editor(),
    ("GET", "/api/v1/models"): viewer(),
    ("GET", "/api/v1/models/providers"): viewer(),
    ("POST", "/api/v1/models"): admin(json_body(lambda w, p: {"name": unique("model"), "model": "openai/x"})),
    ("GET", "/api/v1/models/{model_id}"): viewer(),
    ("PATCH", "/api/v1/models/{model_id}"): admin(json_body(lambda w, p: {"api_key": "sk-new"})),
    ("DELETE", "/api/v1/models/{model_id}"): admin(),
    ("GET", "/api/v1/system-models"): admin(),
    ("GET", "/api/v1/system-models/visible"): viewer(),
    ("POST", "/api/v1/system-models"): Row(
        "admin", json_body(lambda w, p: {"name": unique("sys"), "model": "openai/x"}), outsider="403"),
    ("GET", "/api/v1/system-models/{system_model_id}"): Row("viewer", outsider="ok"),
    ("PATCH", "/api/v1/system-models/{system_model_id}"): Row(
        "admin", json_body(lambda w, p: {"api_key": "sk-new"}), outsider="403"),
    ("DELETE", "/api/v1/system-models/{system_model_id}"): Row("admin", outsider="403"),
    # prompts: editors write, publish, roll back and set rollouts; viewers read, fetch and run
    ("GET", "/api/v1/prompts"): viewer(),
    ("POST", "/api/v1/prompts"): editor(json_body(lambda w, p: {
        "key": unique("prompt"), "messages": [{"role": "user", "content": "llama census"}]})),
    ("GET", "/api/v1/prompts/{prompt_id}"): viewer(),
    ("PATCH", "/api/v1/prompts/{prompt_id}"): editor(json_body(lambda w, p: {"description": "d"})),
    ("PUT", "/api/v1/prompts/{prompt_id}"): editor(json_body(lambda w, p: {"description": "e"})),
    # seed 001 names the prompt in the body: the outsider's body names the first workspace's prompt -> 404
    ("POST", "/api/v1/prompts/publish"): Row(
        "editor", json_body(lambda w, p: {"id": new_prompt(w)[0], "note": "by id"}), outsider="404"),
    ("POST", "/api/v1/prompts/rollback"): Row(
        "editor", json_body(lambda w, p: {"id": new_prompt(w)[0], "version": 1}), outsider="404"),
    ("DELETE", "/api/v1/prompts/{prompt_id}"): editor(),
    ("POST", "/api/v1/prompts/{prompt_id}/publish"): editor(json_body(lambda w, p: {"note": "again"})),
    ("GET", "/api/v1/prompts/{prompt_id}/versions"): viewer(),
    ("GET", "/api/v1/prompts/{prompt_id}/versions/{number}"): viewer(),
    ("POST", "/api/v1/prompts/{prompt_id}/rollback"): editor(json_body(lambda w, p: {"version": 1})),
    ("GET", "/api/v1/prompts/{prompt_id}/rollout"): viewer(),
    ("PUT", "/api/v1/prompts/{prompt_id}/rollout"): editor(json_body(lambda w, p: {
        "variants": [{"version": 1, "weight": 40}, {"version": 2, "weight": 60}]})),
    ("DELETE", "/api/v1/prompts/{prompt_id}/rollout"): editor(),
    ("POST", "/api/v1/prompts/{prompt_id}/execute"): viewer(json_body(lambda w, p: {"variables": {"who": "alpaca"}})),
    ("GET", "/api/v1/sdk/prompts/{key}"): viewer(),
    ("POST", "/api/v1/playground/run"): viewer(json_body(lambda w, p: {
        "text": "Hello {{ who }}", "variables": {"who": "llama"}})),
    ("GET", "/api/v1/playground/providers"): viewer(),
    # governance
    ("GET", "/api/v1/roles"): viewer(),
    ("GET", "/api/v1/audit"): admin(),
    ("GET", "/api/v1/executions/stats"): viewer(),
    ("GET", "/api/v1/runs/stats"): viewer(),
    # MCP servers agents may use (admins write, credentials write-only)
    ("GET", "/api/v1/mcp-servers"): viewer(),
    ("POST", "/api/v1/mcp-servers"): admin(json_body(lambda w, p: {
        "name": unique("mcp"), "url": "https://93.184.216.34/mcp", "allowed_tools": ["weather"]})),
    ("GET", "/api/v1/mcp-servers/{mcp_server_id}"): viewer(),
    ("PATCH", "/api/v1/mcp-servers/{mcp_server_id}"): admin(json_body(lambda w, p: {"token": "t-new"})),
    ("DELETE", "/api/v1/mcp-servers/{mcp_server_id}"): admin(),
    # workflows (editors write; viewers read, validate and run) and reusable workflow steps
    ("POST", "/api/v1/workflows"): editor(json_body(lambda w, p: {"name": unique("wf"), "definition": WORKFLOW})),
    ("GET", "/api/v1/workflows"): viewer(),
    ("POST", "/api/v1/workflows/validate"): viewer(json_body(lambda w, p: {"definition": WORKFLOW})),
    ("GET", "/api/v1/workflows/{workflow_id}"): viewer(),
    ("PATCH", "/api/v1/workflows/{workflow_id}"): editor(json_body(lambda w, p: {"definition": WORKFLOW})),
    ("PUT", "/api/v1/workflows/{workflow_id}"): editor(json_body(lambda w, p: {"description": "d"})),
    ("DELETE", "/api/v1/workflows/{workflow_id}"): editor(),
    ("GET", "/api/v1/workflows/{workflow_id}/versions"): viewer(),
    ("GET", "/api/v1/workflows/{workflow_id}/versions/{number}"): viewer(),
    ("POST", "/api/v1/workflows/{workflow_id}/run"): viewer(json_body(lambda w, p: {"input": {"n": 1}})),
    ("POST", "/api/v1/workflows/{workflow_id}/run/stream"): viewer(json_body(lambda w, p: {"input": {"n": 1}})),
    ("POST", "/api/v1/workflow-steps"): editor(json_body(lambda w, p: {
        "name": unique("wfs"), "kind": "transform", "config": {"template": "{{ input.n }}"}})),
    ("GET", "/api/v1/workflow-steps"): viewer(),
    ("GET", "/api/v1/workflow-steps/{workflow_step_id}"): viewer(),
    ("GET", "/api/v1/workflow-steps/{workflow_step_id}/usage"): viewer(),
    ("PATCH", "/api/v1/workflow-steps/{workflow_step_id}"): editor(json_body(lambda w, p: {"description": "d"})),
    ("DELETE", "/api/v1/workflow-steps/{workflow_step_id}"): editor(),
    # workspace events, automations, subscriptions and the live feed (members emit and follow; editors automate)
    ("POST", "/api/v1/events"): viewer(json_body(lambda w, p: {"type": "census.counted", "payload": {"llamas": 3}})),
    ("GET", "/api/v1/events"): viewer(),
    ("GET", "/api/v1/events/stream"): viewer(lambda w, caller, p: {"params": {"follow": "false"}}),
    ("WEBSOCKET", "/api/v1/ws"): viewer(),  # the handshake: 401 anonymous, accepted for every member
    ("GET", "/api/v1/clients"): admin(),
    ("POST", "/api/v1/automations"): editor(new_automation_body),
    ("GET", "/api/v1/automations"): viewer(),
    ("GET", "/api/v1/automations/{automation_id}"): viewer(),
    ("PATCH", "/api/v1/automations/{automation_id}"): editor(json_body(lambda w, p: {"enabled": False})),
    ("DELETE", "/api/v1/automations/{automation_id}"): editor(),
    ("POST", "/api/v1/subscriptions"): editor(json_body(lambda w, p: {
        "name": unique("sub"), "url": "https://93.184.216.34/hook", "event_types": ["never.sent"]})),
    ("GET", "/api/v1/subscriptions"): viewer(),
    ("GET", "/api/v1/subscriptions/{subscription_id}"): viewer(),
    ("PATCH", "/api/v1/subscriptions/{subscription_id}"): editor(json_body(lambda w, p: {"enabled": False})),
    ("DELETE", "/api/v1/subscriptions/{subscription_id}"): editor(),
    ("POST", "/api/v1/subscriptions/{subscription_id}/rotate-secret"): editor(),
    ("GET", "/api/v1/subscriptions/{subscription_id}/deliveries"): viewer(),
    # OpenAI-compatible routes (/v1, no /api prefix): OpenAI's wire format, errors included
    ("GET", "/v1/models"): viewer(),
    ("POST", "/v1/chat/completions"): viewer(json_body(lambda w, p: {
        "model": "ragline/assistant", "messages": [{"role": "user", "content": "how many llamas?"}]})),
}

FRAMEWORK_METHODS = {"OPTIONS", "HEAD"}  # Litestar adds OPTIONS to every path itself
STATIC_PREFIXES = ("/console/", "/static/")  # the console's JS/CSS and Swagger UI's files
# mounted ASGI apps, not Litestar HTTP routes: /mcp (the MCP server) passes the same guard as every route (viewer);
# its refusals and its tools per token are tested in tests/api/test_mcp_servers.py and tests/compat/test_mcp_server.py
MOUNTS = ("/mcp",)
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def route_inventory(app: Any) -> set[tuple[str, str]]:
    """(method, path) for every route of the app except Litestar's own OpenAPI pages and the static files of the
    console and the docs (public, by path: ``STATIC_PREFIXES``; tests/browser/test_offline_pages.py fetches them)."""
    found = set()
    for route in app.routes:
        if route.path in ("/schema", *MOUNTS) or route.path.startswith(("/schema/", *STATIC_PREFIXES)):
            continue
        methods = route.methods - FRAMEWORK_METHODS if isinstance(route, HTTPRoute) else {route.scope_type.upper()}
        found |= {(method, _PARAM.sub(r"{\1}", route.path)) for method in methods}
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[World]:
    settings = make_settings(tmp_path_factory.mktemp("matrix") / "data", rate_limit_per_minute=1_000_000,
                             token_mint_per_minute=1_000_000, token_mint_per_day=1_000_000)  # builders mint a lot
    with open_api(settings, embedder) as api:
        w = World(api=api, tokens={"admin": api.token})
        for role in ("viewer", "editor"):
            w.tokens[role] = issue_user(api, "default", unique(role), role)
        w.tokens["outsider"] = issue_user(api, "elsewhere", "outsider", "admin")
        for caller in ("viewer", "editor", "admin"):
            me = api.request("GET", "/api/v1/me", token=w.tokens[caller]).json()["data"]
            w.user_ids[caller] = me["user_id"]
            w.first_ids |= {me["user_id"], me["workspace_id"], me["token"]["id"]}
        # searchable data in the first workspace, which the outsider must never see
        w.new_file(w.new_kb())
        yield w


def test_every_route_is_in_the_matrix(world: World) -> None:
    inventory = route_inventory(world.api.client.app)
    missing = sorted(inventory - ROUTES.keys())
    stale = sorted(ROUTES.keys() - inventory)
    assert not missing, f"routes without an authorisation row (add them to ROUTES): {missing}"
    assert not stale, f"rows for routes that no longer exist: {stale}"


def build_request(world: World, caller: str, path: str, row: Row) -> tuple[str, dict[str, Any]]:
    params: Params = {}
    for name in _PARAM.findall(path):
        builder = PARAMS.get(name)
        assert builder is not None, f"no builder for path parameter {{{name}}}: add one to PARAMS"
        params[name] = str(builder(world, caller, params))
    kwargs = row.send(world, caller, params) if row.send else {}
    return path.format(**params), kwargs


def expected(row: Row, caller: str, addresses_object: bool) -> str:
    if row.role is None:
        return "ok"
    if caller == "anonymous":
        return "401"
    if caller == "outsider":
        return row.outsider or ("404" if addresses_object else "ok")
    return "ok" if ROLES.index(caller) >= ROLES.index(row.role) else "403"


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES), ids=[f"{m} {p}" for m, p in sorted(ROUTES)])
def test_route_authorisation(world: World, method: str, path: str) -> None:
    row = ROUTES[(method, path)]
    addresses_object = bool(_PARAM.search(path))
    for caller in CALLERS:
        url, kwargs = build_request(world, caller, path, row)
        response = world.call(caller, method, url, **kwargs)
        want = expected(row, caller, addresses_object)
        where = f"{caller} {method} {url}: {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, where
        if want == "ok":
            assert 200 <= response.status_code < 300, where
        else:
            assert response.status_code == int(want), where
            body = response.json()
            if path.startswith("/v1/"):  # OpenAI-compatible routes answer in OpenAI's error shape
                assert set(body) == {"error"} and body["error"]["message"] and body["error"]["type"], where
            else:
                assert body["data"] is None and body["error"] and body["message"], where
        if caller == "outsider":
            leaked = sorted(i for i in world.first_ids if i in response.text)
            assert not leaked, f"{where}: carries ids of the first workspace {leaked}"
