"""Hostile bodies on every JSON route: always a 4xx with the error envelope, never a 500.

The JSON routes are discovered from the app's route table (handlers with a JSON ``data`` body), so a
new route is covered the day it is added. Each body below is sent as the workspace admin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.routes import HTTPRoute

from api.auth import takes_json_body
from tests.api.conftest import Api, make_settings, open_api

DEEP = 100_000
DIGITS = "9" * 5000
HOSTILE: dict[str, bytes] = {
    "array nested 100k deep": b"[" * DEEP + b"]" * DEEP,
    "object nested 100k deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "nested inside a field": b'{"name":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "5000-digit integer": f'{{"name": {DIGITS}, "query": {DIGITS}, "top_k": {DIGITS}, "role": {DIGITS}}}'.encode(),
    "5000-digit float": f'{{"top_k": {DIGITS}.5e999, "expires_at": 1e99999}}'.encode(),
    "5000-digit top level": DIGITS.encode(),
    "NUL in strings": b'{"name": "a\\u0000b", "query": "a\\u0000b", "input": "a\\u0000b", "message": "\\u0000"}',
    "raw NUL byte": b'{"name": "a\x00b"}',
    "wrong types": b'{"name": ["x"], "query": {"a": 1}, "role": 7, "kb_ids": "kb", "top_k": "ten", "user_id": 1}',
    "array instead of object": b'[{"name": "x", "query": "x"}]',
    "string instead of object": b'"name"',
    "null body": b"null",
    "invalid UTF-8": b'{"name": "\xff\xfe\xfd", "query": "\xc3\x28"}',
    "overlong UTF-8 NUL": b'{"name": "a\xc0\x80b"}',
    "lone surrogate escape": b'{"name": "\\ud800", "query": "\\udfff"}',
    "empty body": b"",
    "truncated JSON": b'{"name": "x", "query": ',
    "duplicate keys with junk": b'{"name": "x", "name": {"$gt": ""}}',
    "unknown server-owned fields": b'{"name": "x", "query": "x", "workspace_id": "ws_x", "secret_hash": "0"}',
}
WRONG_CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]


def json_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every handler that decodes a JSON body."""
    found = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if takes_json_body(handler):
                found |= {(m, route.path) for m in handler.http_methods}
    return sorted(found)


def concrete(path: str, workspace_id: str) -> str:
    """Fill path parameters: the caller's workspace (so the guard lets the body through), else a dummy id."""
    path = re.sub(r"\{workspace_id(?::[^}]*)?\}", workspace_id, path)
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: f"{m.group(1).split('_')[0]}_000000000000000000000000", path)


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Api]:
    settings = make_settings(tmp_path_factory.mktemp("malformed") / "data", rate_limit_per_minute=1_000_000)
    with open_api(settings, embedder) as api:
        yield api


def assert_error_envelope(response: Any, where: str) -> None:
    assert 400 <= response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    body = response.json()
    if " /v1/" in where:
        # the OpenAI-compatible routes answer in OpenAI's error shape, which its clients parse
        assert body["error"]["message"] and body["error"]["type"], where
    else:
        assert body["data"] is None and body["error"] and body["message"] and body["code"], where
    assert "Traceback" not in response.text and "/work/" not in response.text, where


def test_there_are_json_routes_to_check(admin: Api) -> None:
    routes = json_routes(admin.client.app)
    assert ("POST", "/api/v1/tokens") in routes and ("POST", "/api/v1/search") in routes
    assert not any(path.endswith("/files") for _, path in routes)  # multipart upload is not JSON


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bodies_are_4xx_on_every_json_route(admin: Api, case: str) -> None:
    workspace_id = admin.request("GET", "/api/v1/me").json()["data"]["workspace_id"]
    for method, path in json_routes(admin.client.app):
        url = concrete(path, workspace_id)
        response = admin.request(method, url, content=HOSTILE[case], headers={"Content-Type": "application/json"})
        assert_error_envelope(response, f"{case}: {method} {url}")


def test_wrong_content_type_is_415_on_every_json_route(admin: Api) -> None:
    workspace_id = admin.request("GET", "/api/v1/me").json()["data"]["workspace_id"]
    valid_looking = b'{"name": "x", "query": "x"}'
    for method, path in json_routes(admin.client.app):
        url = concrete(path, workspace_id)
        for content_type in WRONG_CONTENT_TYPES:
            headers = {"Content-Type": content_type} if content_type else {}
            response = admin.request(method, url, content=valid_looking, headers=headers)
            assert_error_envelope(response, f"{content_type}: {method} {url}")
            assert response.status_code == 415, f"{content_type}: {method} {url}: {response.text[:200]}"


def test_specific_answers(admin: Api) -> None:
    """The common cases get the precise status: 400 unreadable, 415 wrong type, 422 schema violations."""

    def post(body: bytes, content_type: str = "application/json") -> Any:
        return admin.request("POST", "/api/v1/tokens", content=body, headers={"Content-Type": content_type})

    assert post(HOSTILE["array nested 100k deep"]).status_code == 400
    assert post(HOSTILE["invalid UTF-8"]).status_code == 400
    assert post(b"").status_code == 400
    assert post(b'{"name": ').status_code == 400
    nul = post(b'{"name": "a\\u0000"}')
    assert nul.status_code in (400, 422) and "NUL" in nul.json()["message"]
    assert post(b'{"name": "x", "secret_hash": "0"}').status_code == 422
    assert post(b'{"name": 5}').status_code == 422
    assert post(b"[]").status_code == 422
    assert post(b'{"name": "x"}', "text/plain").status_code == 415
    assert post(b'{"name": "x"}', "application/json; charset=utf-8").status_code == 201
    assert post(b'{"name": "escaped \\\\u0000 is just text"}').status_code == 201


BEYOND_THE_DATABASES = [2**31, 2**63, -(2**63) - 1, 10**30]  # version numbers are 32-bit INTEGER columns


def test_numbers_beyond_the_databases_range_are_4xx(admin: Api) -> None:
    """Version numbers reach SQL as parameters: one past a 32-bit or 64-bit integer was an overflow in the driver (500)
    on real prompts and workflows, where the hostile bodies above stop earlier at a missing id."""
    prompt = admin.request(
        "POST",
        "/api/v1/prompts",
        json={
            "key": "overflow",
            "messages": [{"role": "system", "content": "Hello"}, {"role": "user", "content": "Hi"}],
        },
    )
    assert prompt.status_code == 201, prompt.text
    prompt_id = prompt.json()["data"]["id"]
    assert admin.request("POST", f"/api/v1/prompts/{prompt_id}/publish", json={}).status_code == 201
    workflow = admin.request(
        "POST",
        "/api/v1/workflows",
        json={"name": "overflow", "definition": {"steps": [{"id": "a", "kind": "transform", "template": "x"}]}},
    )
    assert workflow.status_code == 201, workflow.text
    workflow_id = workflow.json()["data"]["id"]
    agent = admin.request("POST", "/api/v1/agents", json={"name": "overflow"})
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["data"]["id"]
    for number in BEYOND_THE_DATABASES:
        calls = [
            ("GET", f"/api/v1/prompts/{prompt_id}/versions/{number}", None),
            ("GET", f"/api/v1/workflows/{workflow_id}/versions/{number}", None),
            ("POST", "/api/v1/prompts/rollback", {"prompt_id": prompt_id, "version": number}),
            ("POST", f"/api/v1/prompts/{prompt_id}/rollback", {"version": number}),
            ("PUT", f"/api/v1/prompts/{prompt_id}/rollout", {"variants": [{"version": number, "weight": 100}]}),
            ("POST", f"/api/v1/prompts/{prompt_id}/execute", {"version": number}),
            ("POST", "/api/v1/playground/run", {"prompt_id": prompt_id, "version": number}),
            ("POST", f"/api/v1/workflows/{workflow_id}/run", {"version": number}),
            ("POST", f"/api/v1/workflows/{workflow_id}/run/stream", {"version": number}),
            ("POST", "/api/v1/agents", {"name": "pinned", "prompt_key": "overflow", "prompt_version": number}),
            ("PATCH", f"/api/v1/agents/{agent_id}", {"prompt_key": "overflow", "prompt_version": number}),
            ("POST", "/api/v1/workflows", {"name": f"pinned {number}", "definition": {"steps": [
                {"id": "a", "kind": "prompt", "prompt": "overflow", "version": number}]}}),
            ("POST", "/api/v1/workflow-steps", {"name": f"pinned {number}", "kind": "prompt",
                                                "config": {"prompt": "overflow", "version": number}}),
        ]  # fmt: skip
        for method, path, body in calls:
            response = admin.request(method, path, json=body) if body is not None else admin.request(method, path)
            assert_error_envelope(response, f"{method} {path} {body}")


def test_nul_in_a_query_or_path_is_400(admin: Api) -> None:
    """PostgreSQL cannot take NUL in a text parameter (SQLite can): a query parameter or path segment holding one
    was a 500 there (``GET /variables?environment_id=…%00…``, found by the OpenAPI fuzz test). Refused up front, on
    every route, public ones included."""
    for url in (
        "/api/v1/variables?environment_id=prod%00",
        "/api/v1/knowledge-bases?q=a%00b",
        "/api/v1/events?type=file.%00",
        "/api/v1/prompts/prm_%00/versions",
        "/api/v1/knowledge-bases/kb_%00",
        "/api/webhook/hook%00",
    ):  # fmt: skip
        method = "POST" if url.startswith("/api/webhook") else "GET"
        response = admin.request(method, url, json={} if method == "POST" else None)
        assert_error_envelope(response, f"{method} {url}")
        assert response.status_code == 400 and "NUL" in response.json()["message"], (url, response.text)


def test_urls_that_do_not_parse_are_4xx(admin: Api) -> None:
    """An unclosed IPv6 literal made ``urlsplit`` raise inside the SSRF check: a 500 on ``POST /mcp-servers``."""
    for url in ("http://[::1", "https://[8.8.8.8]/x", "http://[fe80::1%25eth0/mcp"):
        for path, body in (
            ("/api/v1/mcp-servers", {"name": "broken", "url": url}),
            ("/api/v1/subscriptions", {"url": url, "event_types": ["file.*"]}),
            ("/api/v1/agents", {"name": "broken", "callback_url": url}),
        ):  # fmt: skip
            assert_error_envelope(admin.request("POST", path, json=body), f"POST {path} {url}")


def test_nul_in_upload_fields_never_reaches_the_database(admin: Api) -> None:
    """Multipart fields are not JSON, so the body check does not see them: NUL in a file name is escaped (the name
    shows ``%00``), in tags or metadata refused (PostgreSQL cannot store it; ``make test-postgres`` runs this). Tags
    refuse every control character, through a form or a JSON body alike."""
    kb_id = admin.create_kb("nul uploads")

    def upload(name: str, **fields: str) -> Any:
        content = f"# {name}\n\n{sorted(fields.items())}".encode()  # distinct: a duplicate would answer first
        return admin.request("POST", f"/api/v1/knowledge-bases/{kb_id}/files", files={"file": (name, content)},
                             data=fields)  # fmt: skip

    named = upload("a\x00b.md")
    assert named.status_code == 201 and named.json()["data"]["name"] == "a%00b.md", named.text
    for fields in ({"tags": "x\x00y"}, {"metadata": '{"k": "v\\u0000"}'}, {"metadata": '{"k\\u0000": "v"}'}):
        response = upload("fields.md", **fields)
        assert_error_envelope(response, f"upload with {fields}")
    patched = admin.request("PATCH", f"/api/v1/knowledge-bases/{kb_id}/files/{named.json()['data']['id']}",
                            json={"tags": ["line\nbreak"]})  # fmt: skip
    assert patched.status_code == 422 and "control characters" in patched.json()["message"], patched.text


def test_nul_in_a_golden_set_upload_is_422(admin: Api) -> None:
    """The golden-set upload reads a form and a file, which skip the JSON body's NUL check: a NUL in its name was a
    500 on PostgreSQL, one inside the file's JSON was stored where the JSON route refuses it."""
    kb_id = admin.create_kb("nul golden sets")
    good = b'[{"query": "q", "files": ["a.md"]}]'
    for fields, content in (
        ({"name": "a\x00b"}, good),
        ({"name": "described", "description": "d\x00"}, good),
        ({"name": "in the query"}, b'[{"query": "q\\u0000", "files": ["a.md"]}]'),
        ({"name": "raw"}, b'[{"query": "q\x00", "files": ["a.md"]}]'),
    ):
        response = admin.request(
            "POST", f"/api/v1/knowledge-bases/{kb_id}/golden-sets/upload",
            files={"file": ("golden.json", content)}, data=fields,
        )  # fmt: skip
        assert response.status_code == 422 and "NUL" in response.json()["message"], (fields, response.text)
    accepted = admin.request(
        "POST", f"/api/v1/knowledge-bases/{kb_id}/golden-sets/upload", files={"file": ("golden.json", good)},
        data={"name": "fine", "description": "two\nlines"},
    )  # fmt: skip
    assert accepted.status_code == 201, accepted.text


def test_names_with_a_trailing_newline_are_refused(admin: Api) -> None:
    """Python's ``$`` also matches before a final newline, so every name checked by a pattern ending in ``$`` took
    ``"name\\n"``: a prompt key, variable or environment that looks like another, a model string sent to the
    provider with a newline. Each is refused now (the patterns end in ``\\Z``, the regexes use ``fullmatch``); the
    same names without the newline are accepted."""
    cases = [
        ("/api/v1/prompts", lambda n: {"key": n, "messages": [{"role": "user", "content": "Hi"}]}, "support"),
        ("/api/v1/prompts", lambda n: {"key": f"k{len(n)}", "tags": [n], "messages": [
            {"role": "user", "content": "Hi"}]}, "email"),
        ("/api/v1/environments", lambda n: {"name": n}, "staging"),
        ("/api/v1/variables", lambda n: {"name": n, "value": "v"}, "TOKEN"),
        ("/api/v1/models", lambda n: {"name": f"m{len(n)}", "model": n}, "ragline/extractive"),
        ("/api/v1/mcp-servers", lambda n: {"name": n, "url": "https://93.184.216.34/mcp"}, "weather"),
        ("/api/v1/mcp-servers", lambda n: {"name": f"s{len(n)}", "url": "https://93.184.216.34/mcp",
                                           "headers": {n: "v"}}, "X-Key"),
        ("/api/v1/events", lambda n: {"type": n}, "invoice.paid"),
        ("/api/v1/subscriptions", lambda n: {"name": f"h{len(n)}", "url": "https://93.184.216.34/h",
                                             "event_types": [n]}, "invoice.*"),
        ("/api/v1/workflows", lambda n: {"name": f"w{len(n)}", "definition": {
            "steps": [{"id": n, "kind": "transform", "template": {"x": 1}}]}}, "first"),
    ]  # fmt: skip
    for path, body, name in cases:
        accepted = admin.request("POST", path, json=body(name))  # the body is otherwise valid
        assert accepted.status_code in (200, 201), (path, name, accepted.text[:300])
        refused = admin.request("POST", path, json=body(name + "\n"))
        assert refused.status_code == 422, (path, name, refused.status_code, refused.text[:300])
