"""``/mcp`` starts on its first request (``api.mcp_endpoint``): requests that arrive together while it starts all
wait for the same start and are answered; the app's other routes never waited for it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.api.conftest import Api

ACCEPT = {"Accept": "application/json, text/event-stream"}


def test_concurrent_first_requests_share_one_start(api: Api) -> None:
    assert api.request("GET", "/api/v1/me").status_code == 200  # the app serves before /mcp was ever called

    def list_tools(n: int) -> tuple[int, object]:
        body = {"jsonrpc": "2.0", "id": n, "method": "tools/list", "params": {}}
        response = api.request("POST", "/mcp", json=body, headers=ACCEPT)
        return response.status_code, response.json()

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(list_tools, range(4)))
    for n, (status, body) in enumerate(answers):
        assert status == 200, body
        assert isinstance(body, dict) and body["id"] == n
        assert sorted(tool["name"] for tool in body["result"]["tools"]) == ["ask", "list_files", "search"]
