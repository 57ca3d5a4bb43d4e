"""A real `ragline serve` process on 127.0.0.1 (Litestar's in-process clients do not stream)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30, **kwargs
        )  # type: ignore[arg-type]


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, token: str | None = None) -> LiveServer:
    port = free_port()
    token = token or "rl_" + secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "RAGLINE_DATA_DIR": str(data_dir),
        "RAGLINE_BOOTSTRAP_TOKEN": token,
        "RAGLINE_TORCH_THREADS": "1",
        "RAGLINE_PORT": str(port),
        **(extra_env or {}),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{port}.log"
    log = log_path.open("wb")
    # `python -m api.cli serve` under the test network guard (no model endpoint or host beyond loopback)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.network_guard", "api.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", token, process, log_path)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not become healthy in 90 s")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[object]:
    started: list[LiveServer] = []

    def factory(extra_env: dict[str, str] | None = None, name: str = "data", token: str | None = None) -> LiveServer:
        server = start_server(tmp_path / name, extra_env, token)
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.process.poll() is None:
            stop_server(server)
