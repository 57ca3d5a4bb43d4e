"""MCP servers agents may use (``/api/v1/mcp-servers``) and the ``/mcp`` mount's refusal, through the app.

No MCP traffic here (tests/e2e/test_mcp_client.py and tests/compat/test_mcp_server.py talk MCP to real servers):
saving a server never connects to it, so public IP literals stand in for real hosts.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.test_configuration import raw_database
from tests.api.test_tokens import assert_refused, issue_user

pytestmark = pytest.mark.slow
SERVERS = "/api/v1/mcp-servers"
CANARY_TOKEN = "mcp-canary-token-3e8b1f0a9c2d"
CANARY_HEADER = "mcp-canary-header-7d4c2a9e1b6f"
PUBLIC_URL = "https://93.184.216.34/mcp"  # a public address: passes the SSRF guard without DNS, never contacted


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def new_server(api: Api, **body: Any) -> dict[str, Any]:
    fields = {"name": "tools", "url": PUBLIC_URL, "allowed_tools": ["weather"], **body}
    return created(api.request("POST", SERVERS, json=fields))


def test_credentials_are_write_only_and_sealed(api: Api) -> None:
    server = new_server(api, token=CANARY_TOKEN, headers={"X-Api-Key": CANARY_HEADER}, timeout_s=5)
    assert server["has_token"] is True and server["header_names"] == ["X-Api-Key"]
    assert server["allowed_tools"] == ["weather"] and server["timeout_s"] == 5 and server["id"].startswith("mcp_")
    for response in (api.request("GET", SERVERS), api.request("GET", f"{SERVERS}/{server['id']}"),
                     api.request("GET", "/api/v1/audit")):  # fmt: skip
        assert response.status_code == 200, response.text
        assert CANARY_TOKEN not in response.text and CANARY_HEADER not in response.text
    assert CANARY_TOKEN not in raw_database(api) and CANARY_HEADER not in raw_database(api)
    updated = api.request("PATCH", f"{SERVERS}/{server['id']}", json={"token": "", "headers": {}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["has_token"] is False and updated.json()["data"]["header_names"] == []


def test_what_a_server_configuration_may_say(api: Api) -> None:
    assert api.request("POST", SERVERS, json={"name": "tools", "url": PUBLIC_URL}).status_code == 201
    assert api.request("POST", SERVERS, json={"name": "tools", "url": PUBLIC_URL}).status_code == 409
    for body in (
        {"name": "bad name", "url": PUBLIC_URL},  # tool names are <name>__<tool>: letters, digits, _ and -
        {"name": "two__parts", "url": PUBLIC_URL},
        {"name": "9lives", "url": PUBLIC_URL},
        {"name": "x", "url": "ftp://93.184.216.34/mcp"},
        {"name": "x", "url": PUBLIC_URL, "headers": {"Host": "evil.example"}},  # set by the transport
        {"name": "x", "url": PUBLIC_URL, "headers": {"Mcp-Session-Id": "s"}},
        {"name": "x", "url": PUBLIC_URL, "headers": {"bad header": "v"}},
        {"name": "x", "url": PUBLIC_URL, "headers": {"X-A": "line\r\nbreak"}},
        {"name": "x", "url": PUBLIC_URL, "timeout_s": 0},
        {"name": "x", "url": PUBLIC_URL, "workspace_id": "ws_other"},
    ):
        response = api.request("POST", SERVERS, json=body)
        assert response.status_code in (400, 422), (body, response.text)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/mcp", "http://localhost:9/mcp", "http://10.0.0.7/mcp", "http://169.254.169.254/mcp",
    "http://[::1]:9/mcp", "http://2130706433/mcp",
])  # fmt: skip
def test_the_ssrf_guard_refuses_internal_urls_by_default(api: Api, url: str) -> None:
    response = api.request("POST", SERVERS, json={"name": "internal", "url": url})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "blocked_destination"
    server = new_server(api, name="public")
    patched = api.request("PATCH", f"{SERVERS}/{server['id']}", json={"url": url})
    assert patched.status_code == 422 and patched.json()["code"] == "blocked_destination"


def test_agents_name_servers_of_their_own_workspace(api: Api) -> None:
    server = new_server(api)
    agent = created(api.request("POST", "/api/v1/agents", json={"name": "mcp-agent", "mcp_servers": [server["id"]]}))
    assert agent["mcp_servers"] == [server["id"]]
    plain = created(api.request("POST", "/api/v1/agents", json={"name": "plain"}))
    assert plain["mcp_servers"] == []
    unknown = api.request("POST", "/api/v1/agents", json={"name": "x", "mcp_servers": ["mcp_unknown"]})
    assert unknown.status_code == 422 and "unknown MCP server" in unknown.json()["message"]
    cleared = api.request("PATCH", f"/api/v1/agents/{agent['id']}", json={"mcp_servers": []})
    assert cleared.status_code == 200 and cleared.json()["data"]["mcp_servers"] == []
    outsider = issue_user(api, "elsewhere", "outsider", "admin")
    assert api.request("GET", f"{SERVERS}/{server['id']}", token=outsider).status_code == 404
    theirs = api.request("POST", "/api/v1/agents", json={"name": "x", "mcp_servers": [server["id"]]}, token=outsider)
    assert theirs.status_code == 422
    assert api.request("DELETE", f"{SERVERS}/{server['id']}", token=outsider).status_code == 404


def test_members_read_admins_write(api: Api) -> None:
    viewer = issue_user(api, "default", "reader", "viewer")
    editor = issue_user(api, "default", "writer", "editor")
    server = new_server(api)
    assert api.request("GET", f"{SERVERS}/{server['id']}", token=viewer).status_code == 200
    assert api.request("POST", SERVERS, json={"name": "x", "url": PUBLIC_URL}, token=editor).status_code == 403
    assert api.request("PATCH", f"{SERVERS}/{server['id']}", json={"timeout_s": 3}, token=editor).status_code == 403
    # an editor may point an agent at a server the admins configured
    agent = api.request("POST", "/api/v1/agents", json={"name": "x", "mcp_servers": [server["id"]]}, token=editor)
    assert agent.status_code == 201, agent.text


def test_the_mcp_endpoint_needs_a_token(api: Api) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert_refused(api.client.post("/mcp", json=body))
    assert_refused(api.client.post("/mcp", json=body, headers={"Authorization": "Bearer rl_not_a_token"}))
    assert_refused(api.client.post("/mcp/anything", json=body))
