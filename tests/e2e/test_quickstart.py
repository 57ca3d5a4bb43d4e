"""A newcomer's first run: the README Quickstart's shell blocks after ``make run``, exactly as written, run by bash
against a real ``ragline serve``. Each ``# prints: …`` comment in them is checked against what the command above it
printed (``…`` stands for any text), so the README and this test cannot drift apart."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LiveServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash"),
]
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARK = "@@quickstart-step-done@@"
# what the blocks say, and what the test points them at instead
README_TOKEN = "TOKEN=rl_..."
README_API = "API=http://127.0.0.1:8000/api/v1"
README_VENV = ".venv/bin/"


def quickstart_blocks() -> list[str]:
    """The ```bash blocks of the Quickstart section that come after the one with `make run`."""
    section = README.read_text().split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks and "make run" in blocks[0], "the Quickstart starts with a bash block running `make run`"
    return blocks[1:]


@dataclass
class Step:
    expected: str  # the `# prints:` text
    printed: str = ""  # what the commands before it printed (stdout)


@dataclass
class Run:
    steps: list[Step]
    stderr: str
    returncode: int


def run_quickstart(server: LiveServer, *, token: str | None = None) -> Run:
    script = "\n".join(quickstart_blocks())
    for placeholder in (README_TOKEN, README_API, README_VENV):
        assert placeholder in script, f"the Quickstart no longer contains {placeholder!r}: update this test"
    script = script.replace(README_TOKEN, f"TOKEN={token or server.token}")
    script = script.replace(README_API, f"API={server.base_url}/api/v1")
    script = script.replace(README_VENV, f"{Path(sys.executable).parent}/")
    lines, steps = [], []
    for line in script.splitlines():
        lines.append(line)
        expected = re.match(r"\s*# prints: (.+)$", line)
        if expected:
            steps.append(Step(expected.group(1)))
            lines.append(f"echo {MARK}")
    data_dir = server.log_path.parent / "data"  # start_server's layout: the CLI works on the server's data
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # python3: 3.11
        "RAGLINE_DATA_DIR": str(data_dir),
    }
    env.pop("RAGLINE_BOOTSTRAP_TOKEN", None)
    result = subprocess.run(
        ["bash", "-c", "\n".join(lines)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    printed = result.stdout.split(f"{MARK}\n")
    for step, text in zip(steps, printed, strict=False):
        step.printed = text
    return Run(steps, result.stderr, result.returncode)


def shows(expected: str, printed: str) -> bool:
    """``printed`` contains the fragments of ``expected`` (split at ``…``) in order, whitespace aside."""
    text, at = " ".join(printed.split()), 0
    for fragment in (" ".join(f.split()) for f in expected.split("…")):
        if fragment:
            found = text.find(fragment, at)
            if found < 0:
                return False
            at = found + len(fragment)
    return True


def test_the_quickstart_prints_what_the_readme_says(live_server_factory) -> None:
    server = live_server_factory()
    run = run_quickstart(server)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert len(run.steps) >= 4  # upload, search, chat, a token after losing one
    for step in run.steps:
        assert shows(step.expected, step.printed), f"expected {step.expected!r}, printed {step.printed!r}"
    health = httpx.get(f"{server.base_url}/health", timeout=10).json()
    assert health["status"] == "ready" and health["ready"] is True


def test_the_quickstart_prints_the_apis_error_messages_not_tracebacks(live_server_factory) -> None:
    server = live_server_factory()
    first = run_quickstart(server)
    assert first.returncode == 0, first.stderr
    # a second run: the knowledge base's name is taken (409); every command says so or what followed from it
    again = run_quickstart(server)
    assert "error: a knowledge base named 'handbook' already exists" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr and "TypeError" not in again.stderr
    # a wrong token: the API's own message, on every command that uses it
    refused = httpx.get(f"{server.base_url}/api/v1/me", headers={"Authorization": "Bearer rl_wrong"}, timeout=10)
    message = refused.json()["message"]
    wrong = run_quickstart(server, token="rl_wrong")
    assert "Traceback" not in wrong.stderr and "TypeError" not in wrong.stderr
    errors = wrong.stderr.splitlines()
    assert len(errors) == 4 and all(e.startswith("error: ") for e in errors), errors  # kb, upload, search, chat
    assert errors[0] == f"error: {message}" and errors.count(f"error: {message}") >= 3, errors
    assert shows("admin", wrong.steps[-1].printed)  # and a token from `ragline token create` fixes it


@pytest.mark.slow
def test_a_first_start_on_a_new_machine_exports_the_model_in_one_line_while_warming(live_server_factory, tmp_path):
    server = live_server_factory({"RAGLINE_MODEL_CACHE_DIR": str(tmp_path / "empty-model-cache")})
    health = httpx.get(f"{server.base_url}/health", timeout=10).json()
    assert health["status"] == "warming" and health["ready"] is False  # serving (200), not ready: exporting
    deadline = time.monotonic() + 240
    while health["status"] == "warming" and time.monotonic() < deadline:
        time.sleep(0.2)
        health = httpx.get(f"{server.base_url}/health", timeout=10).json()
    assert health["status"] == "ready", health
    log = server.log_path.read_text()
    said = [line.split("] ", 1)[-1] for line in log.splitlines() if "the embedding model" in line]
    assert len(said) == 2, said
    assert said[0].startswith("exporting the embedding model to int8 ONNX (once per machine, ~20 s)")
    assert re.fullmatch(r"…exported the embedding model in \d+\.\d s", said[1]), said
    noise = ("fusion", "quantiz", "loading weights", "onnxruntime", "warning:root", "tracerwarning", "optimiz")
    assert not [line for line in log.lower().splitlines() if any(word in line for word in noise)], log[-3000:]
