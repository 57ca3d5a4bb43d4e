"""The served OpenAPI document tells the truth: error envelope, error statuses, security and examples.

Generated clients read ``/schema/openapi.json``; what it documents is checked against the route table
(which routes are public) and against real answers of the running app.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from litestar.routes import HTTPRoute
from openapi_spec_validator import validate

from api.openapi import ERROR_REF, resource_kind
from api.openapi_examples import DATE_TIME, sample
from tests.api.conftest import Api
from tests.api.test_chat_and_runs import parse_sse

METHODS = ("get", "put", "post", "patch", "delete", "head")
PROTECTED_ERRORS = ("401", "403", "404", "422", "429")
ENVELOPE_KEYS = {"data", "error", "message", "code"}


def fetch(api: Api) -> dict[str, Any]:
    response = api.request("GET", "/schema/openapi.json")  # the schema routes are behind the guard (admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def route_opts(api: Api) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path template) -> the handler's ``opt`` for every documented handler of the app."""
    found = {}
    for route in api.client.app.routes:
        if isinstance(route, HTTPRoute):
            for method, (handler, _) in route.route_handler_map.items():
                if method != "OPTIONS" and handler.resolve_include_in_schema():
                    found[(method.lower(), route.path_format)] = dict(handler.opt)
    return found


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def check(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """``value`` is valid under ``schema`` (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(value)


def error_schema(response: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


def test_document_is_valid_openapi(api: Api) -> None:
    doc = fetch(api)
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["required"]) == ENVELOPE_KEYS
    assert envelope["properties"]["data"] == {"type": "null"}
    assert all(envelope["properties"][key]["type"] == "string" for key in ("error", "message", "code"))


def test_every_route_is_documented_with_its_security(api: Api) -> None:
    doc, opts = fetch(api), route_opts(api)
    documented = {(method, path) for path, method, _ in operations(doc)}
    assert documented == set(opts)
    schemes = set(doc["components"]["securitySchemes"])
    for path, method, operation in operations(doc):
        if opts[(method, path)].get("public"):
            assert operation["security"] == [], (method, path)
        else:
            assert operation["security"], (method, path)
            assert all(set(requirement) <= schemes for requirement in operation["security"])
    assert not doc["paths"]["/health"]["get"]["security"]
    assert not doc["paths"]["/api/webhook/{path}"]["post"]["security"]


def test_protected_operations_list_their_errors_with_the_envelope(api: Api) -> None:
    doc, opts = fetch(api), route_opts(api)
    for path, method, operation in operations(doc):
        responses = operation["responses"]
        for status, response in responses.items():
            if not status.startswith("2"):
                assert error_schema(response) == {"$ref": ERROR_REF}, (method, path, status)
        if opts[(method, path)].get("public"):
            continue
        assert set(PROTECTED_ERRORS) <= set(responses), (method, path, sorted(responses))
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= set(responses), (method, path)
    for path in ("/api/v1/knowledge-bases/{kb_id}/files", "/api/v1/knowledge-bases/{kb_id}/golden-sets/upload"):
        upload = doc["paths"][path]["post"]  # raw multipart routes: documented by hand
        assert "multipart/form-data" in upload["requestBody"]["content"], path
        assert {"413", "415"} <= set(upload["responses"]), path
    assert set(doc["paths"]["/health"]["get"]["responses"]) == {"200", "500"}
    webhook = doc["paths"]["/api/webhook/{path}"]["post"]["responses"]
    assert {"401", "404", "413", "429"} <= set(webhook) and "403" not in webhook
    for path in ("/api/v1/prompts/{prompt_id}/versions/{number}", "/api/v1/workflows/{workflow_id}/versions/{number}"):
        version = doc["paths"][path]["get"]  # a number past its bounds is refused before the handler: 400
        number = next(p for p in version["parameters"] if p["name"] == "number")
        assert number["schema"]["maximum"] == 2**31 - 1 and "400" in version["responses"], path


def test_no_litestar_default_error_body_anywhere(api: Api) -> None:
    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for node in walk(fetch(api)):
        properties = node.get("properties")
        assert not (isinstance(properties, dict) and {"status_code", "detail"} <= set(properties)), node


def test_every_operation_has_examples_that_match_its_schemas(api: Api) -> None:
    doc = fetch(api)
    for path, method, operation in operations(doc):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, (method, path)
        for status, response in operation["responses"].items():
            for media_type, media in response["content"].items():
                assert "example" in media, (method, path, status, media_type)
                if media_type == "application/json":
                    check(doc, media["schema"], media["example"])
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            if media_type == "application/json":
                assert "example" in media, (method, path)
                check(doc, media["schema"], media["example"])
        for parameter in operation.get("parameters", []):
            check(doc, parameter["schema"], parameter["example"])
    agent = doc["paths"]["/api/v1/agents/{agent_id}"]["get"]["responses"]
    assert agent["404"]["content"]["application/json"]["example"]["error"] == "Agent not found"
    assert agent["200"]["content"]["application/json"]["example"]["data"]["id"].startswith("agt_")
    stream = doc["paths"]["/api/v1/agents/{agent_id}/run/stream"]["post"]["responses"]["200"]["content"]
    assert set(stream) == {"text/event-stream"}


def test_real_error_answers_match_the_documented_envelope(api: Api) -> None:
    doc = fetch(api)
    viewer = api.request("POST", "/api/v1/tokens", json={"name": "reader", "role": "viewer"})
    assert viewer.status_code == 201, viewer.text
    agents = "/api/v1/agents"
    cases = [
        (404, "get", "/api/v1/agents/{agent_id}", api.request("GET", f"{agents}/agt_missing")),
        (422, "post", agents, api.request("POST", agents, json={})),
        (401, "get", agents, api.client.request("GET", agents)),
        (401, "get", agents, api.request("GET", agents, token="rl_not-a-token")),
        (403, "post", agents, api.request("POST", agents, json={"name": "x"}, token=viewer.json()["data"]["secret"])),
        (415, "post", agents, api.request("POST", agents, content=b'{"name": "x"}',
                                          headers={"Content-Type": "text/plain"})),
        (400, "post", agents, api.request("POST", agents, content=b"{not json",
                                          headers={"Content-Type": "application/json"})),
        (400, "get", agents, api.request("GET", agents, params={"limit": "0"})),
        (404, "post", "/api/webhook/{path}", api.client.post("/api/webhook/nowhere", json={})),
    ]
    for status, method, path, response in cases:
        assert response.status_code == status, (status, method, path, response.text)
        documented = doc["paths"][path][method]["responses"][str(status)]
        check(doc, error_schema(documented), response.json())
        assert response.json()["data"] is None


def test_examples_are_generated_from_the_schemas() -> None:
    schemas = {"AgentInfo": {"title": "AgentInfo", "type": "object", "required": ["id"], "properties": {
        "id": {"type": "string"},
        "kb_ids": {"type": "array", "items": {"type": "string"}},
        "mode": {"type": "string", "enum": ["dense", "sparse"]},
        "created_at": {"type": "string", "format": "date-time"},
        "max_tokens": {"oneOf": [{"type": "integer"}, {"type": "null"}], "minimum": 1, "maximum": 100},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 5},
    }}}  # fmt: skip
    value = sample({"$ref": "#/components/schemas/AgentInfo"}, schemas)
    assert value["id"].startswith("agt_") and value["kb_ids"][0].startswith("kb_")
    assert value["mode"] == "dense" and value["created_at"] == DATE_TIME
    assert value["max_tokens"] is not None and 1 <= value["max_tokens"] <= 100 and value["top_k"] == 5
    assert sample({"$ref": "#/components/schemas/AgentInfo"}, schemas, full=False) == {"id": value["id"]}
    assert sample({"$ref": "#/components/schemas/AgentInfo"}, schemas) == value  # deterministic
    assert resource_kind("/api/v1/agents/{agent_id}/run") == "agent"
    assert resource_kind("/api/v1/knowledge-bases/{kb_id}/files") == "knowledge base"
    assert resource_kind("/api/v1/agents") == "workspace"


@pytest.mark.parametrize("path", ["/schema/openapi.json", "/schema/openapi.yaml"])
def test_every_rendering_serves_the_corrected_document(api: Api, path: str) -> None:
    response = api.request("GET", path)
    assert response.status_code == 200
    assert "ErrorEnvelope" in response.text and "Validation Exception" not in response.text  # Litestar's 400


def referenced(doc: dict[str, Any], schema: Any) -> set[str]:
    """Names of the components ``schema`` refers to, directly or through other components."""
    found: set[str] = set()
    waiting = [schema]
    while waiting:
        node = waiting.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.rsplit("/", 1)[-1] not in found:
                found.add(name := ref.rsplit("/", 1)[-1])
                waiting.append(doc["components"]["schemas"][name])
            waiting.extend(node.values())
        elif isinstance(node, list):
            waiting.extend(node)
    return found


def test_request_bodies_that_refuse_unknown_fields_say_so(api: Api) -> None:
    """Every JSON body refuses unknown fields (422, see test_malformed_input): its schema says
    ``additionalProperties: false``, so a generated client or a fuzzer knows. Answers stay open (a new field in an
    answer must not break a client that validates it)."""
    doc = fetch(api)
    schemas = doc["components"]["schemas"]
    closed = {name for name, schema in schemas.items() if schema.get("additionalProperties") is False}
    bodies: set[str] = set()
    answers: set[str] = set()
    for _, _, operation in operations(doc):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            bodies |= referenced(doc, body["schema"])
            tops = [body["schema"], *body["schema"].get("allOf", [])]  # allOf: Litestar's wrapper for examples
            assert all(top["$ref"].rsplit("/", 1)[-1] in closed for top in tops if "$ref" in top), body["schema"]
        for response in operation["responses"].values():
            answers |= referenced(doc, response.get("content", {}))
    assert {"KnowledgeBaseCreate", "SearchBody", "TokenCreate", "Budgets", "VariantBody"} <= closed & bodies
    assert not closed & answers, sorted(closed & answers)


def test_options_allows_every_documented_method(api: Api) -> None:
    """``OPTIONS`` on a path answers ``Allow`` with all its methods (Litestar's own handler named only some)."""
    doc = fetch(api)
    workspace_id = api.request("GET", "/api/v1/workspaces").json()["data"][0]["id"]  # the guard checks this one
    for path, item in doc["paths"].items():
        documented = {m.upper() for m in item if m in METHODS}
        if not documented or not path.startswith("/api/v1/"):
            continue
        path_with_workspace = path.replace("{workspace_id}", workspace_id)
        url = re.sub(r"\{(\w+)\}", lambda m: "1" if m[1] == "number" else "x", path_with_workspace)
        response = api.request("OPTIONS", url)
        assert response.status_code == 204, (path, response.status_code)
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert documented | {"OPTIONS"} <= allowed, (path, sorted(allowed))


def test_bounds_the_app_enforces_are_in_the_document(api: Api) -> None:
    """Litestar drops a zero bound (``ge=0``) and every constraint on a list's items; the document now has them,
    and the app refuses what the document refuses. Date-time query parameters also take unix seconds, as the app
    decodes them."""
    doc = fetch(api)
    schemas = doc["components"]["schemas"]

    def query(path: str, name: str) -> dict[str, Any]:
        return next(p["schema"] for p in doc["paths"][path]["get"]["parameters"] if p["name"] == name)

    def array(schema: dict[str, Any]) -> dict[str, Any]:
        return next((o for o in schema.get("oneOf", []) if o.get("type") == "array"), schema)

    assert query("/api/v1/audit", "offset")["minimum"] == 0
    assert query("/api/v1/executions/{run_id}/events", "after")["minimum"] == 0
    assert schemas["AgentCreate"]["properties"]["temperature"]["minimum"] == 0
    assert schemas["SearchBody"]["properties"]["page_from"]["minimum"] == 0
    assert array(schemas["AutomationCreate"]["properties"]["event_types"])["items"]["minLength"] == 1
    assert array(schemas["AutomationUpdate"]["properties"]["event_types"])["items"]["minLength"] == 1
    assert array(schemas["AgentCreate"]["properties"]["mcp_servers"])["items"]["minLength"] == 1
    assert array(schemas["SearchBody"]["properties"]["file_ids"])["items"]["minLength"] == 1
    headers = next(s for n, s in schemas.items() if n.startswith("McpServerCreate"))["properties"]["headers"]
    assert next(o for o in headers["oneOf"] if o.get("type") == "object")["propertyNames"]["minLength"] == 1
    assert {"type": "number", "description": "unix seconds"} in query("/api/v1/audit", "until")["oneOf"]
    # the app's patterns end in Python's \Z (its $ passes a final newline); the document says $, as ECMA-262 does
    assert schemas["PromptCreate"]["properties"]["key"]["pattern"].endswith("*$")
    assert "\\Z" not in json.dumps(doc)

    # patterns the service checks with its own message are shown too
    pattern = array(schemas["SubscriptionCreate"]["properties"]["event_types"])["items"]["pattern"]
    assert re.fullmatch(pattern, "file.*") and not re.fullmatch(pattern, "File ready")
    assert re.fullmatch(schemas["EventCreate"]["properties"]["type"]["pattern"], "invoice.paid")
    metadata = next(o for o in schemas["FileUpdate"]["properties"]["metadata"]["oneOf"] if o.get("type") == "object")
    assert re.fullmatch(metadata["propertyNames"]["pattern"], "department")
    assert not re.fullmatch(metadata["propertyNames"]["pattern"], "two words")
    emitted = api.request("POST", "/api/v1/events", json={"type": "Invoice paid"})
    assert emitted.status_code == 422 and "dotted lower-case words" in emitted.json()["message"]

    assert api.request("GET", "/api/v1/audit?offset=-1").status_code == 400
    assert api.request("GET", "/api/v1/audit?until=1705314600").status_code == 200
    assert api.request("POST", "/api/v1/search", json={"query": "x", "file_ids": [""]}).status_code == 422
    refused = api.request("POST", "/api/v1/automations", json={"name": "a", "event_types": [""], "action": "agent"})
    assert refused.status_code == 422 and "event_types[0]" in refused.json()["message"]


@pytest.mark.slow
def test_run_events_match_their_documented_schema(api: Api, handbook: str) -> None:
    """Every event a run streams (SSE ``data``) and stores (``GET /executions/{id}/events``) is valid under the
    documented ``RunEvent``, which the SSE operations name as their events' ``contentSchema``."""
    doc = fetch(api)
    response = api.request("POST", "/api/v1/assistant/chat", json={"message": "How many weeks of parental leave?"})
    frames = parse_sse(response.text)
    assert {"execution", "tool_start", "tool_end", "citation", "content", "done"} <= {f["event"] for f in frames}
    stored = api.request("GET", f"/api/v1/executions/{frames[0]['data']['run_id']}/events").json()["data"]
    run_event = {"$ref": "#/components/schemas/RunEvent"}
    for payload in [frame["data"] for frame in frames] + stored:
        check(doc, run_event, payload)
    stream = doc["paths"]["/api/v1/assistant/chat"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    assert stream["schema"]["properties"]["data"]["contentSchema"] == run_event
    listed = doc["paths"]["/api/v1/executions/{run_id}/events"]["get"]["responses"]["200"]["content"]
    check(doc, listed["application/json"]["schema"], {"data": stored})
    with pytest.raises(jsonschema.ValidationError):  # the schema has teeth: ts is ISO-8601 on the wire
        check(doc, run_event, {**stored[0], "ts": 1705314600.0})


def test_workflow_steps_are_documented_by_kind(api: Api) -> None:
    """A definition's steps are decoded as objects (so every problem of every step is listed), which left the
    document with no word on them; it now names each kind's fields, or a step made from a reusable one."""
    doc = fetch(api)
    spec = {"$ref": "#/components/schemas/WorkflowSpec"}
    search = {"id": "s", "kind": "search", "query": "{{ input.question }}"}
    check(doc, spec, {"steps": [search, {"id": "r", "uses": "summarise"}]})
    for wrong in ({"id": "s", "kind": "search"}, {**search, "kind": "searching"}, {**search, "top_k": 1000}):
        with pytest.raises(jsonschema.ValidationError):
            check(doc, spec, {"steps": [wrong]})
    validated = api.request("POST", "/api/v1/workflows/validate", json={"definition": {"steps": [search]}})
    assert validated.status_code == 200, validated.text


def test_every_stream_example_matches_its_event_schema(api: Api) -> None:
    """The example of each SSE operation parses into events its item schema accepts, their data included, with no
    field the schema does not name (the run example's token_usage had names the wire never used)."""
    doc = closed(fetch(api))
    streams = [(path, response["content"]["text/event-stream"]) for path, _, operation in operations(doc)
               for response in operation["responses"].values() if "text/event-stream" in response.get("content", {})]
    assert len(streams) >= 7
    for path, media in streams:
        frames = parse_sse(media["example"])
        assert frames, path
        for frame in frames:
            check(doc, media["schema"], {**frame, "data": json.dumps(frame["data"])})
            check(doc, media["schema"]["properties"]["data"]["contentSchema"], frame["data"])
            assert frame["data"]["type"] == frame["event"], path


def closed(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` whose component objects refuse fields they do not name (to hold examples to the schema)."""

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    strict = copy.deepcopy(doc)
    close(strict["components"])
    return strict
