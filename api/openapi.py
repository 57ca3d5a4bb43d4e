"""The OpenAPI document the app serves: Litestar's generated one, corrected to what the app really answers.

One hook: ``RaglineOpenAPIConfig`` notes each operation's route facts (public or the role it needs, SSE)
while Litestar names the operations, and hands Litestar an ``OpenAPI`` whose ``to_schema()`` (what every
``/schema/*`` endpoint renders) rewrites the generated dict: the ``ErrorEnvelope`` replaces Litestar's
``{status_code, detail, extra}`` body, each operation lists the error statuses it can answer, carries its
security requirement (none on public routes) and request / response examples made from its schemas.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from typing import Any

import msgspec
from litestar._openapi.utils import default_operation_id_creator
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import OpenAPI
from litestar.response import ServerSentEvent
from litestar.types import Method
from litestar.types.internal_types import PathParameterDefinition

from api.openapi_constraints import constrain_struct, ecma_patterns, parameter_bounds, struct_components
from api.openapi_examples import DATE_TIME, SSE_EXAMPLE, WORKSPACE_SSE_EXAMPLE, sample, sample_string
from api.sse import run_event_schemas
from engine.workflows.definition import STEP_ID, Step

JSON = dict[str, Any]
ERROR_REF = "#/components/schemas/ErrorEnvelope"
ERROR_ENVELOPE: JSON = {"title": "ErrorEnvelope", "description": "Every error answer (never a traceback).",
                        "type": "object", "required": ["data", "error", "message", "code"], "properties": {
    "data": {"type": "null"},
    "error": {"type": "string", "description": "what was refused, in a few words, e.g. 'Agent not found' (the "
              "HTTP reason phrase where there is nothing more specific)"},
    "message": {"type": "string", "description": "the longer explanation, for people"},
    "code": {"type": "string", "description": "stable machine code: bad_request, unauthorized, forbidden, not_found, "
             "conflict, payload_too_large, unsupported_media_type, invalid_input, rate_limited, internal_error, ..."},
    "request_id": {"type": "string", "description": "the request's id, also in the X-Request-ID response header "
                   "(the client's X-Request-ID when usable: printable ASCII, at most 128 characters)"},
}}
# status: (code, when, example message); engine errors (403, 409, 415, 429) repeat the message in ``error``
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "Unreadable body or invalid query parameter", "a JSON request body is required"),
    401: ("unauthorized", "No valid API token", "missing, invalid, expired or revoked API token"),
    403: ("forbidden", "The token's role is too weak for this action", "this action needs the {role} role"),
    404: ("not_found", "No such resource (or workspace) for this token", "The requested {kind} does not exist"),
    409: ("conflict", "Conflicts with the resource's current state", "the {kind} changed; reload it and try again"),
    413: ("payload_too_large", "The request body is over the limit", "request body exceeds the size limit"),
    415: ("unsupported_media_type", "Wrong Content-Type or file type", "send the request body as application/json"),
    422: ("invalid_input", "Well-formed request that breaks the schema or a rule",
          "Validation failed for {method} {path}: data: Object missing required field `name`"),
    429: ("rate_limited", "Too many requests; retry after Retry-After seconds", "rate limit exceeded for this token"),
    500: ("internal_error", "Unexpected server error", "internal server error"),
    503: ("database_unavailable", "The metadata database is locked or unreachable; retry after Retry-After seconds",
          "the database is busy; retry shortly"),
    507: ("insufficient_storage", "No space left to store the upload; nothing partial was kept",
          "not enough storage left for this upload"),
}
_ENGINE_STATUSES = {403, 409, 415, 429}
_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern"}
_ERROR_HEADERS: dict[int, JSON] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds until a request is allowed"}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds until a retry may succeed"}},
}
_KINDS = {"knowledge-bases": "knowledge base", "executions": "run", "sessions": "chat session"}
_STR = {"type": "string"}
_HTTP_DATE = "Mon, 15 Jan 2024 10:30:00 GMT"
_WRITES = {"post", "put", "patch", "delete"}
_METHODS = {"get", "head", *_WRITES}


@dataclass(frozen=True)
class RouteFacts:
    public: bool = False
    role: str = "admin"  # the guard's default for a route without a declared role
    sse: bool = False
    bounds: dict[str, JSON] = field(default_factory=dict)  # query parameter -> the bounds its Parameter declares


def _envelope(data: JSON) -> JSON:
    return {"title": "Envelope", "type": "object", "required": ["data"], "properties": {"data": data, "message": _STR}}


def _nullable(schema: JSON) -> JSON:
    return {"oneOf": [schema, {"type": "null"}]}


_FILE_REF = {"$ref": "#/components/schemas/FileInfo"}
RUN_EVENT_REF = {"$ref": "#/components/schemas/RunEvent"}
_UPLOAD_RESULT = {"title": "UploadResult", "type": "object", "required": ["name"], "properties": {
    "name": _STR, "file": _nullable(_FILE_REF), "error": _nullable(_STR), "code": _nullable(_STR)}}
_WEBHOOK_ACCEPTED = _envelope({"title": "WebhookAccepted", "type": "object", "required": [
    "run_id", "execution_id", "duplicate"], "properties": {"run_id": _nullable(_STR),
    "execution_id": _nullable(_STR), "duplicate": {"type": "boolean"}}})
_WEBHOOK_HEADERS = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "example": value}
    for name, value in (("webhook-id", "msg_2b7fQk1Z"), ("webhook-timestamp", "1705314600"),
                        ("webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="))
]
# what Litestar cannot see: routes that read the raw request (multipart upload, signed webhook) and untyped answers
_OVERRIDES: dict[tuple[str, str], JSON] = {
    ("post", "/api/v1/knowledge-bases/{kb_id}/files"): {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "contentMediaType": "application/octet-stream", "description": "repeatable"},
                "tags": {"type": "string", "description": "comma-separated tags"},
                "metadata": {"type": "string", "description": "a JSON object of metadata"}}}}}},
        "success": _envelope({"oneOf": [_FILE_REF, {"type": "array", "items": _UPLOAD_RESULT}]}),
    },
    ("post", "/api/v1/knowledge-bases/{kb_id}/golden-sets/upload"): {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "contentMediaType": "application/json",
                         "description": "the golden set as JSON or JSONL (at most 1 MiB)"},
                "name": {"type": "string", "description": "default: the file's name without its extension"},
                "description": {"type": "string", "maxLength": 10_000}}}}}},
    },
    ("post", "/api/webhook/{path}"): {
        "parameters": _WEBHOOK_HEADERS,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}, "example": {
            "type": "order.created", "timestamp": DATE_TIME, "data": {"id": "ord_1042", "total": 129.9}}}}},
        "success": _WEBHOOK_ACCEPTED, "extra": {"200": "Duplicate delivery: no new run"},
        "errors": {400, 401, 404, 413, 429, 503},
    },
    ("post", "/api/v1/login"): {"errors": {401, 403, 404, 415, 422, 429, 503}},
    ("get", "/api/v1/executions/{run_id}/events"): {"success": _envelope({"type": "array", "items": RUN_EVENT_REF})},
    ("get", "/health"): {"success": {"type": "object", "required": ["status", "ready"], "properties": {
        "status": {"type": "string", "enum": ["warming", "ready", "degraded"]}, "ready": {"type": "boolean"},
        "warm_up_s": {"type": ["number", "null"]},
        "parts": {"type": "object", "additionalProperties": {"type": "object"}},
        "embedder": {"type": "string", "examples": ["all-MiniLM-L6-v2"]},
        "vector_store": {"type": "string", "examples": ["EdgeVectorStore"]}}}},
}


def _sse_item(data: JSON, event: str, id_: str, *, required: tuple[str, ...] = ("event", "data", "id")) -> JSON:
    """One server-sent event (``event:``, ``id:``, ``data:`` lines); ``: ping`` comment lines keep it open."""
    return {"title": "ServerSentEvent", "type": "object", "required": list(required), "properties": {
        "event": {"type": "string", "description": event},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        "id": {"type": "string", "description": id_}}}  # fmt: skip


_RUN_EVENT_ITEM = _sse_item(RUN_EVENT_REF, "the event's type, as in data.type (names not listed in RunEvent are "
                            "safe to ignore)", "the event's seq in its run: send it back as Last-Event-ID to resume")
_WORKSPACE_EVENT_ITEM = _sse_item(
    {"oneOf": [{"$ref": "#/components/schemas/EventInfo"}, {
        "type": "object", "required": ["code", "reason"], "description": "the last frame (event 'closed') when the "
        "server ends the stream", "properties": {"code": {"type": "integer"}, "reason": {"type": "string"}}}]},
    "the workspace event's type (e.g. file.ready), or 'closed'",
    "the event's id: send it back as Last-Event-ID (or ?after=) to resume", required=("event", "data"))
_SSE_ITEMS = {"/api/v1/events/stream": _WORKSPACE_EVENT_ITEM}


class RaglineOpenAPI(OpenAPI):
    """Litestar's document object; ``to_schema()`` returns the corrected document."""

    route_facts: dict[str, RouteFacts]

    def to_schema(self) -> dict[str, Any]:
        return correct(super().to_schema(), getattr(self, "route_facts", {}))


class RaglineOpenAPIConfig(OpenAPIConfig):
    """``OpenAPIConfig`` that learns each operation's route facts and serves the corrected document."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route_facts: dict[str, RouteFacts] = {}
        self.operation_id_creator = self._operation_id

    def _operation_id(
        self, handler: HTTPRouteHandler, method: Method, components: list[str | PathParameterDefinition]
    ) -> str:
        operation_id = default_operation_id_creator(handler, method, components)
        self.route_facts[operation_id] = RouteFacts(
            public=bool(handler.opt.get("public")), role=str(handler.opt.get("role", "admin")),
            sse=handler.parsed_fn_signature.return_type.is_subclass_of(ServerSentEvent),
            bounds=parameter_bounds(handler),
        )  # fmt: skip
        return operation_id

    def to_openapi_schema(self) -> OpenAPI:
        self.route_facts = {}  # Litestar (re)builds the paths after this call, naming every operation anew
        base = super().to_openapi_schema()
        document = RaglineOpenAPI(**{f.name: getattr(base, f.name) for f in fields(base)})
        document.route_facts = self.route_facts
        return document


def correct(doc: JSON, facts: dict[str, RouteFacts]) -> JSON:
    """Rewrite a generated document (in place) to the error envelope, security and examples the app really has."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorEnvelope"] = ERROR_ENVELOPE
    for name, schema in {**run_event_schemas(), **workflow_step_schemas()}.items():
        schemas.setdefault(name, schema)
    if "WorkflowSpec" in schemas:  # its steps are decoded as objects, so that every problem of every step is listed
        schemas["WorkflowSpec"]["properties"]["steps"]["items"] = {"$ref": "#/components/schemas/WorkflowStepItem"}
    close_strict_bodies(schemas)
    security = doc.get("security") or []
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                fact = facts.get(operation.get("operationId", ""), RouteFacts())
                _correct_operation(path, method, operation, fact, schemas)
                operation["security"] = [] if fact.public else copy.deepcopy(security)
    ecma_patterns(doc)
    return doc


def workflow_step_schemas() -> JSON:
    """A workflow step as the validator takes it: one of the kinds (``WorkflowStep``, by ``kind``), or a step made
    from a reusable one (``uses``), which takes its kind and fields from it, its own overriding them."""
    (union,), components = msgspec.json.schema_components((Step,), ref_template="#/components/schemas/{name}")
    reused = {"type": "object", "required": ["id", "uses"], "description": "a step made from a reusable one",
              "properties": {"id": {"type": "string", "pattern": STEP_ID}, "uses": {"type": "string", "minLength": 1},
                             "kind": {"type": "string"}}}  # fmt: skip
    return {
        "WorkflowStep": {"title": "WorkflowStep", "description": "A step, by its kind.", **union},
        "WorkflowStepItem": {"title": "WorkflowStepItem", "anyOf": [{"$ref": "#/components/schemas/WorkflowStep"},
                                                                    reused]},
        **components,
    }  # fmt: skip


def close_strict_bodies(schemas: JSON) -> None:
    """``additionalProperties: false`` on the components of msgspec Structs that refuse unknown fields (request
    bodies: 422), and every bound their fields enforce (``api.openapi_constraints``)."""
    for cls, schema in struct_components(schemas):
        if cls.__struct_config__.forbid_unknown_fields:
            schema["additionalProperties"] = False
        constrain_struct(cls, schema)


def _correct_operation(path: str, method: str, op: JSON, fact: RouteFacts, schemas: JSON) -> None:
    override = _OVERRIDES.get((method, path), {})
    # Litestar checks these: 400 (a path parameter only if bounded: otherwise any segment is a value or no route)
    validated = any(p.get("in") != "path" or _BOUNDS & set(p.get("schema", {})) for p in op.get("parameters", []))
    op["parameters"] = [*op.get("parameters", []), *copy.deepcopy(override.get("parameters", []))]
    for parameter in op["parameters"]:
        if parameter.get("in") == "query":  # the bounds Litestar drops (a zero)
            for key, value in fact.bounds.get(parameter["name"], {}).items():
                parameter.setdefault("schema", {}).setdefault(key, value)
            _accept_unix_seconds(parameter.get("schema", {}))
        parameter.setdefault("example", sample(parameter.get("schema", {}), schemas, parameter["name"]))
    if not op["parameters"]:
        del op["parameters"]
    if "requestBody" in override:
        op["requestBody"] = copy.deepcopy(override["requestBody"])
    body = op.get("requestBody", {}).get("content", {})
    if "application/json" in body and "example" not in body["application/json"]:
        body["application/json"]["example"] = sample(body["application/json"].get("schema", {}), schemas, full=False)
    responses: JSON = op["responses"]
    _correct_success(path, responses, override, fact, schemas)
    statuses = {500, *override.get("errors", ())} | ({400} if validated else set())
    if body and "requestBody" not in override:  # Litestar decodes it: unreadable 400, too large 413, off-schema 422
        statuses |= {400, 413, 422}
    if not fact.public:  # the guard: token, role, workspace, rate limit; then the handler's own checks
        statuses |= {401, 403, 404, 422, 429, 503} | ({400, 413, 415} if body else set())
        statuses |= {409} if method in _WRITES else set()
    for key in [k for k in responses if not k.startswith("2")]:
        del responses[key]  # Litestar's {status_code, detail, extra} 400
    if "multipart/form-data" in body:
        statuses.add(507)
    for status in sorted(statuses):
        responses[str(status)] = _error_response(status, method, path, fact, "multipart/form-data" in body)


def _accept_unix_seconds(schema: JSON) -> None:
    """A date-time query parameter also takes unix seconds (``?since=1705314600``), as Litestar decodes it."""
    options: list[JSON] = schema.get("oneOf", [])  # every date-time query parameter is optional: [date-time, null]
    if any(option.get("format") == "date-time" for option in options):
        options.insert(1, {"type": "number", "description": "unix seconds"})


def _correct_success(path: str, responses: JSON, override: JSON, fact: RouteFacts, schemas: JSON) -> None:
    first = next(r for s, r in responses.items() if s.startswith("2"))
    for status, description in override.get("extra", {}).items():
        responses[status] = {"description": description, "content": copy.deepcopy(first.get("content", {}))}
    for response in [r for s, r in responses.items() if s.startswith("2")]:
        content = response.setdefault("content", {})
        if fact.sse:
            content.clear()
            item = copy.deepcopy(_SSE_ITEMS.get(path, _RUN_EVENT_ITEM))
            example = WORKSPACE_SSE_EXAMPLE if path in _SSE_ITEMS else SSE_EXAMPLE
            content["text/event-stream"] = {"schema": item, "example": example}
        if "last-modified" in response.get("headers", {}):  # an HTTP-date (Mon, 15 Jan 2024 10:30:00 GMT)
            response["headers"]["last-modified"]["schema"] = {"type": "string", "examples": [_HTTP_DATE]}
            response["headers"]["last-modified"]["description"] = "when the file was stored, as an HTTP-date"
        if "" in content:  # a FileResponse without a media type: the file's own type, bytes in any case
            content["application/octet-stream"] = content.pop("")
        for media in content.values():
            if "success" in override:
                media["schema"] = copy.deepcopy(override["success"])
            if "example" not in media and "examples" not in media:
                media["example"] = sample(media.get("schema", {}), schemas)


def _error_response(status: int, method: str, path: str, fact: RouteFacts, upload: bool) -> JSON:
    code, description, message = _ERRORS[status]
    if upload and status == 415:
        message = "uploads must be multipart/form-data with the file in a field named 'file'"
    kind, example_path = resource_kind(path), re.sub(r"{(\w+)}", lambda m: sample_string({}, m[1], ""), path)
    message = message.format(role=fact.role, kind=kind, method=method.upper(), path=example_path)
    error = HTTPStatus(status).phrase
    if status in _ENGINE_STATUSES:
        error = message[:1].upper() + message[1:]
    elif status == 404:
        error = f"{kind[:1].upper()}{kind[1:]} not found"
    example = {"data": None, "error": error, "message": message, "code": code}
    response: JSON = {"description": description,
                      "content": {"application/json": {"schema": {"$ref": ERROR_REF}, "example": example}}}
    if status in _ERROR_HEADERS:
        response["headers"] = copy.deepcopy(_ERROR_HEADERS[status])
    return response


def resource_kind(path: str) -> str:
    """What a 404 on ``path`` names: the collection before the last path parameter (the workspace if none)."""
    parts = path.strip("/").split("/")
    params = [i for i, part in enumerate(parts) if part.startswith("{")]
    if not params or params[-1] == 0 or parts[params[-1] - 1].startswith("{"):
        return "workspace"
    collection = parts[params[-1] - 1]
    return _KINDS.get(collection, collection.removesuffix("s").replace("-", " "))
