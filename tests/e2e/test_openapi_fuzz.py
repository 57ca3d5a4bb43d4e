"""Every operation of the served OpenAPI document, fuzzed by schemathesis against a real server: never a 5xx.

Schemathesis reads ``/schema/openapi.json`` and sends the documented examples, the boundary cases of every
parameter and body field (its coverage phase), generated requests, and chains of them linked by the ids that
responses return (stateful phase), as the workspace admin, with real objects in most path parameters
(``existing_ids``). The one check is "not a server error": whatever a
request holds, the answer is a 4xx with the error envelope or a success, which the hostile-body tests check for a
fixed list of bodies on every JSON route; this test finds the bodies nobody listed (it found version numbers past
the database's INTEGER). The seed is fixed, so a run is repeatable; ``RAGLINE_FUZZ_SEED`` and
``RAGLINE_FUZZ_EXAMPLES`` (per operation and phase) explore further, e.g. ``RAGLINE_FUZZ_SEED=$RANDOM
RAGLINE_FUZZ_EXAMPLES=50``.

Operations that end the caller's own access are left out (their tests are in ``tests/api/test_tokens.py`` and
``test_users.py``): regenerating, revoking, renewing or deleting a token, logging out, changing the password,
and removing users or members (the fuzzer may remove the admin it is calling as once it has made another). So is
the live event stream, which by design answers until the client leaves (``tests/api/test_events.py`` reads it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import LiveServer, start_server, stop_server
from tests.helpers.postgres import SERVER_URL, fresh_database

SEED = int(os.environ.get("RAGLINE_FUZZ_SEED", "20261207"))
EXAMPLES = int(os.environ.get("RAGLINE_FUZZ_EXAMPLES", "10"))
# no 5xx, and every answer is one the document describes: its status, content type, headers and body (SSE events
# one by one); requests the app refuses although the document allows them are not checked (business rules such as
# "no such model configuration" cannot be written in a schema)
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
          "response_schema_conformance")  # fmt: skip
LEFT_OUT = (
    r"(tokens/\{token_id\}(/(regenerate|revoke|renew))?|logout|me/password|users/\{user_id\}|members/\{user_id\}"
    r"|events/stream)$"
)


def existing_ids(server: LiveServer) -> dict[str, str]:
    """Real objects for the path parameters: without them most operations on one object only ever see a 404."""
    with server.client() as http:

        def made(path: str, body: dict[str, object]) -> str:
            response = http.post(path, json=body)
            assert response.status_code in (200, 201, 202), (path, response.text)
            return str(response.json()["data"]["id"])

        kb_id = made("/api/v1/knowledge-bases", {"name": "fuzzed"})
        upload = http.post(f"/api/v1/knowledge-bases/{kb_id}/files", files={"file": ("a.md", b"# A\n\nSome text.")})
        assert upload.status_code == 201, upload.text
        prompt_id = made("/api/v1/prompts", {"key": "fuzzed", "messages": [{"role": "system", "content": "Hi"}]})
        made(f"/api/v1/prompts/{prompt_id}/publish", {})
        agent_id = made("/api/v1/agents", {"name": "fuzzed", "kb_ids": [kb_id]})
        return {
            "kb_id": kb_id, "file_id": str(upload.json()["data"]["id"]), "prompt_id": prompt_id, "agent_id": agent_id,
            "workflow_id": made("/api/v1/workflows", {"name": "fuzzed", "definition": {
                "steps": [{"id": "a", "kind": "prompt", "prompt": "fuzzed"}]}}),
            "environment_id": made("/api/v1/environments", {"name": "fuzzed"}),
            "session_id": made("/api/v1/chat/sessions", {"agent_id": agent_id}),
            "run_id": str(http.post(f"/api/v1/agents/{agent_id}/run", json={"input": "hi"}).json()["data"]["run_id"]),
        }  # fmt: skip


def config_with(ids: dict[str, str]) -> str:
    """A schemathesis.toml that puts the real ids into their path parameters 4 times in 5 (else generated ones),
    except for deletes, which get ids of the same shape that name nothing (deleted early, the objects would be gone
    for every later operation)."""
    lines = [f"[dictionaries.{name}]\nvalues = [{json.dumps(value)}]\n" for name, value in ids.items()]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.8 }}' for name in ids]
    lines += ["", "[[operations]]", 'include-method = "DELETE"', "[operations.parameters]"]
    lines += [f'"path.{name}" = "{value.split("_")[0]}_{"0" * 24}"' for name, value in ids.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(max(600, 40 * EXAMPLES))  # ~60 s alone; room for a busy 2-core machine
def test_no_request_gets_a_server_error(tmp_path: Path) -> None:
    env = {"RAGLINE_RATE_LIMIT_PER_MINUTE": "1000000"}
    if SERVER_URL:  # .ci/postgres.sh: the same requests against PostgreSQL (its own limits: 32-bit INTEGER, no NUL)
        env["DATABASE_URL"] = fresh_database()
    server = start_server(tmp_path / "data", env)
    try:
        config = tmp_path / "schemathesis.toml"
        config.write_text(config_with(existing_ids(server)))
        cli = Path(sys.executable).with_name("schemathesis")
        run = subprocess.run(
            [
                str(cli), "--config-file", str(config), "run", f"{server.base_url}/schema/openapi.json",
                "-H", f"Authorization: Bearer {server.token}",
                "--checks", ",".join(CHECKS),
                "--phases", "examples,coverage,fuzzing,stateful",
                "--max-examples", str(EXAMPLES), "--seed", str(SEED),
                "--exclude-path-regex", LEFT_OUT,
                "--request-timeout", "60", "--no-color",
            ],
            capture_output=True, text=True, timeout=max(480, 30 * EXAMPLES), cwd=tmp_path,
        )  # fmt: skip
    finally:
        stop_server(server)
    output = run.stdout + run.stderr
    summary = output[output.rfind("SUMMARY") :]
    assert run.returncode == 0, output[-6000:] + "\n--- server log ---\n" + server.log_path.read_text()[-4000:]
    assert "Tested: " in summary and "passed" in summary, summary
