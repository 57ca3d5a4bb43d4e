"""The test-suite network guard (tests/helpers/network_guard.py): loopback only, refused at once, not after a timeout.

192.0.2.0/24 and 2001:db8::/32 are documentation ranges (TEST-NET-1, RFC 5737/3849): never routed, so without
the guard a connect there hangs until its timeout. Each refusal here must come back in well under a second.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from engine.errors import ModelError
from engine.llm import Message, ModelRequest
from engine.models.litellm_client import LiteLLMModelClient
from tests.helpers import network_guard
from tests.helpers.network_guard import NameLookupRefused, NetworkGuardError

ROOT = Path(__file__).resolve().parents[1]
FAST_S = 1.0
EXPECTS_REFUSALS = True  # tests/conftest.py lists unexpected refusals only


def refusal(host: str, port: int) -> str:
    endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"test guard: connection to {endpoint} refused (tests may only reach 127.0.0.1)"


def test_the_guard_is_installed_for_the_whole_session() -> None:
    assert network_guard.installed()


@pytest.mark.parametrize("host, port", [("192.0.2.1", 80), ("10.255.255.1", 9), ("93.184.216.34", 443)])
def test_a_connect_outside_loopback_is_refused_at_once(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        started = time.monotonic()
        with pytest.raises(ConnectionRefusedError) as caught:
            sock.connect((host, port))
        assert time.monotonic() - started < FAST_S
    assert isinstance(caught.value, NetworkGuardError)
    assert str(caught.value) == refusal(host, port)
    assert refusal(host, port) in network_guard.refused


def test_connect_ex_and_ipv6_are_refused_too() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(NetworkGuardError):
        sock.connect_ex(("192.0.2.7", 443))  # would return an errno; the guard raises instead
    try:
        sock6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        pytest.skip("no IPv6 sockets on this machine")
    with sock6, pytest.raises(NetworkGuardError, match=r"connection to \[2001:db8::1\]:443 refused"):
        sock6.connect(("2001:db8::1", 443))


def test_udp_datagrams_outside_loopback_are_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(NetworkGuardError, match=r"datagram to 192\.0\.2\.53:53 refused"):
            sock.sendto(b"\0", ("192.0.2.53", 53))
        with pytest.raises(NetworkGuardError):
            sock.connect(("192.0.2.53", 53))


def test_asyncio_connections_are_refused() -> None:
    async def connect() -> None:
        await asyncio.wait_for(asyncio.open_connection("192.0.2.1", 80), timeout=30)

    started = time.monotonic()
    with pytest.raises(NetworkGuardError, match=r"connection to 192\.0\.2\.1:80 refused"):
        asyncio.run(connect())
    assert time.monotonic() - started < FAST_S


def test_name_lookups_beyond_localhost_are_refused_like_an_offline_machine() -> None:
    with pytest.raises(socket.gaierror) as caught:
        socket.getaddrinfo("api.openai.com", 443)
    assert isinstance(caught.value, NameLookupRefused)
    assert "test guard: name lookup of 'api.openai.com' refused" in str(caught.value)
    # legacy numeric forms are numbers to the C resolver (no DNS): allowed to resolve, checked by address
    for legacy in ("2130706433", "0x7f000001", "0177.0.0.1", "127.1"):
        assert socket.getaddrinfo(legacy, 80, type=socket.SOCK_STREAM)[0][4][0] == "127.0.0.1"
    with socket.socket() as sock, pytest.raises(NetworkGuardError, match=r"connection to 3221225985:80 refused"):
        sock.connect(("3221225985", 80))  # 192.0.2.1 as one decimal number
    # numeric hosts and localhost resolve as always (no DNS traffic); the connect that follows is what is checked
    assert socket.getaddrinfo("192.0.2.1", 80, type=socket.SOCK_STREAM)[0][4][:2] == ("192.0.2.1", 80)
    assert {info[4][0] for info in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)} <= {
        "127.0.0.1",
        "::1",
    }


def echo_once(server: socket.socket) -> threading.Thread:
    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(16).upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
def test_loopback_still_works(host: str) -> None:
    with socket.create_server(("127.0.0.1" if host == "localhost" else host, 0)) as server:
        port = server.getsockname()[1]
        thread = echo_once(server)
        with socket.create_connection((host, port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(16) == b"PING"
        thread.join(5)


def test_ipv6_loopback_still_works() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no ::1 on this machine")
    with server:
        thread = echo_once(server)
        with socket.create_connection(("::1", server.getsockname()[1]), timeout=5) as client:
            client.sendall(b"six")
            assert client.recv(16) == b"SIX"
        thread.join(5)


def test_unix_sockets_pass(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen()
        thread = echo_once(server)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            client.sendall(b"unix")
            assert client.recv(16) == b"UNIX"
        thread.join(5)


def causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def test_a_model_endpoint_outside_loopback_fails_fast_with_a_model_error() -> None:
    client = LiteLLMModelClient(api_base="http://192.0.2.1:9/v1", api_key="sk-test", timeout_s=60)
    client.warm_up()  # the litellm import (~2 s) is not the call
    request = ModelRequest(model="openai/x", messages=(Message(role="user", content="hi"),))

    async def call() -> None:
        async for _event in client.stream(request):
            pass

    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        anyio.run(call)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"took {elapsed:.1f} s: the guard must refuse, not wait for a timeout"
    # litellm rewords the error ("Connection error."); the guard's refusal is the root of the chain
    guard = [e for e in causes(caught.value) if isinstance(e, NetworkGuardError)]
    assert guard, [f"{type(e).__name__}: {e}" for e in causes(caught.value)]
    assert str(guard[0]) == refusal("192.0.2.1", 9)


def test_server_subprocesses_are_guarded_too(tmp_path: Path) -> None:
    """The launcher tests/e2e starts `ragline serve` with: the guard is on before the module runs."""
    (tmp_path / "probe.py").write_text("import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=30)\n")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.network_guard", "probe"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 30
    assert done.returncode != 0
    assert refusal("192.0.2.1", 80) in done.stderr  # echoed by the guard, then the traceback
    assert "NetworkGuardError" in done.stderr
