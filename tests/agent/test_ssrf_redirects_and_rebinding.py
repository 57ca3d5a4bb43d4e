"""SSRF: redirects to internal addresses and DNS rebinding, for ``http_fetch`` and run callbacks.

Real HTTP servers on loopback stand in for both sides. The one "public" site the tests may reach
listens on 127.0.0.2 and only ``127.0.0.2/32`` is allowed (the operator allow-list); 127.0.0.1 plays
the internal network: every server there records what reached it, and must never be reached.

DNS rebinding uses a patched ``socket.getaddrinfo`` for one fake name: the first lookup (the guard's
check) answers the allowed or a public address, every later one 127.0.0.1. A client that resolved
the name again to connect would land on the internal server; the pinned client connects to the
checked address. Where that address is really public, the test network guard refuses the connection:
the test checks that its one refusal names the pinned public address and nothing reached 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api.services.callbacks import CallbackService
from engine.agent.http_fetch import HttpFetchTool
from engine.db.models import Agent, CallbackDelivery, Workspace
from engine.db.session import create_engine, migrate, session_factory
from engine.net import allowed_networks
from engine.ports import ToolContext
from tests.helpers import network_guard

EXPECTS_REFUSALS = True  # the rebinding tests provoke one guard refusal each and assert exactly which

pytestmark = pytest.mark.anyio

CTX = ToolContext(run_id="run_1", workspace_id="ws_a")
SITE_ADDRESS = "127.0.0.2"  # the allowed "public" site
INTERNAL_ADDRESS = "127.0.0.1"  # the internal network: never to be reached
ALLOW_SITE = ("127.0.0.2/32",)
PUBLIC_ADDRESS = "93.184.216.34"  # a real public address (the guard refuses any connection to it)
FAKE_NAME = "rebind.ragline.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Host:
    """A recording HTTP server: ``routes`` maps a path to (status, Location or body)."""

    address: str
    routes: dict[str, tuple[int, str]] = field(default_factory=dict)
    hits: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Host header)
    port: int = 0
    name: str = ""

    @property
    def origin(self) -> str:
        return f"http://{self.address}:{self.port}"


def _handler(host: Host) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            host.hits.append((self.command, self.path, self.headers.get("Host", "")))
            status, value = host.routes.get(self.path, (200, f"page of {host.name}"))
            body = b"" if status in (301, 302, 303, 307, 308) else value.encode()
            self.send_response(status)
            if status in (301, 302, 303, 307, 308):
                self.send_header("Location", value)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

    return Handler


def _start(host: Host) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer((host.address, host.port), _handler(host))
    host.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd


@pytest.fixture
def pair() -> Iterator[tuple[Host, Host]]:
    """(site on 127.0.0.2, internal on 127.0.0.1), both on the same port: a name that rebinds from one
    to the other with an unchanged URL reaches whichever address the client really connects to."""
    servers: list[ThreadingHTTPServer] = []
    internal = Host(INTERNAL_ADDRESS, name="internal")
    site = Host(SITE_ADDRESS, name="site")
    for _ in range(20):
        internal.port = site.port = 0
        servers.append(_start(internal))
        site.port = internal.port
        try:
            servers.append(_start(site))
            break
        except OSError:  # that port is taken on 127.0.0.2: try another pair
            servers.pop().server_close()
    else:
        pytest.fail("no free port on both 127.0.0.1 and 127.0.0.2")
    yield site, internal
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class Resolver:
    """``socket.getaddrinfo`` with one fake name: ``answers[i]`` for its i-th lookup (the last one repeats)."""

    answers: list[tuple[str, ...]]
    lookups: int = 0


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Resolver]:
    real = socket.getaddrinfo

    def install(*answers: tuple[str, ...]) -> Resolver:
        state = Resolver(list(answers))

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode("ascii", "replace") if isinstance(host, bytes) else host  # anyio passes IDNA bytes
            if name != FAKE_NAME:
                return real(host, port, *args, **kwargs)
            answer = state.answers[min(state.lookups, len(state.answers) - 1)]
            state.lookups += 1
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))) for address in answer]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return state

    return install


def refusals_since(before: int) -> list[str]:
    return list(network_guard.refused[before:])


def guard_refusal(address: str, port: int) -> str:
    return f"test guard: connection to {address}:{port} refused ({network_guard.ALLOWED})"


# --- http_fetch: redirects -------------------------------------------------------------------


def _internal_locations(internal: Host) -> list[str]:
    port = internal.port
    # loopback first: a client that followed these would read the internal page (no guard in the way)
    return [
        f"http://127.0.0.1:{port}/secret",
        f"http://localhost:{port}/secret",
        f"http://[::ffff:127.0.0.1]:{port}/secret",
        f"http://2130706433:{port}/secret",  # 127.0.0.1 as a decimal number
        f"http://[::1]:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "file:///etc/passwd",
    ]


@pytest.mark.parametrize("status", [302, 307])
async def test_http_fetch_refuses_redirects_to_internal_addresses(pair: tuple[Host, Host], status: int) -> None:
    site, internal = pair
    tool = HttpFetchTool(allowed_networks=ALLOW_SITE)
    before = len(network_guard.refused)
    for n, location in enumerate(_internal_locations(internal)):
        site.routes[f"/go{n}"] = (status, location)
        result = await tool({"url": f"{site.origin}/go{n}"}, CTX)
        assert result.is_error and result.summary == "blocked destination", (location, result.content)
    assert [path for _, path, _ in site.hits] == [f"/go{n}" for n in range(len(_internal_locations(internal)))]
    assert internal.hits == []
    assert refusals_since(before) == []  # refused by the SSRF check, before any connection was tried


async def test_http_fetch_follows_a_redirect_that_stays_allowed(pair: tuple[Host, Host]) -> None:
    site, internal = pair
    site.routes["/old"] = (301, "/new")
    result = await HttpFetchTool(allowed_networks=ALLOW_SITE)({"url": f"{site.origin}/old"}, CTX)
    assert not result.is_error and result.content.endswith("page of site")
    assert [path for _, path, _ in site.hits] == ["/old", "/new"] and internal.hits == []


# --- http_fetch: DNS rebinding ---------------------------------------------------------------


async def test_http_fetch_connects_to_the_checked_address_when_the_name_rebinds(
    pair: tuple[Host, Host], rebinding: Callable[..., Resolver]
) -> None:
    site, internal = pair
    resolver = rebinding((SITE_ADDRESS,), (INTERNAL_ADDRESS,))
    result = await HttpFetchTool(allowed_networks=ALLOW_SITE)({"url": f"http://{FAKE_NAME}:{site.port}/page"}, CTX)
    assert not result.is_error and result.content.endswith("page of site"), result.content
    assert site.hits == [("GET", "/page", f"{FAKE_NAME}:{site.port}")]  # the original Host header
    assert internal.hits == [] and resolver.lookups == 1  # never asked DNS a second time


async def test_http_fetch_rebinding_through_a_redirect_hop(
    pair: tuple[Host, Host], rebinding: Callable[..., Resolver]
) -> None:
    site, internal = pair
    site.routes["/hop"] = (302, f"http://{FAKE_NAME}:{site.port}/page")
    resolver = rebinding((SITE_ADDRESS,), (INTERNAL_ADDRESS,))
    result = await HttpFetchTool(allowed_networks=ALLOW_SITE)({"url": f"{site.origin}/hop"}, CTX)
    assert not result.is_error and result.content.endswith("page of site")
    assert [path for _, path, _ in site.hits] == ["/hop", "/page"] and internal.hits == []
    assert resolver.lookups == 1


async def test_http_fetch_rebinding_from_a_public_address_connects_only_to_it(
    pair: tuple[Host, Host], rebinding: Callable[..., Resolver]
) -> None:
    _site, internal = pair
    resolver = rebinding((PUBLIC_ADDRESS,), (INTERNAL_ADDRESS,))
    before = len(network_guard.refused)
    result = await HttpFetchTool()({"url": f"http://{FAKE_NAME}:{internal.port}/secret"}, CTX)
    assert result.is_error and result.summary == "fetch failed", result.content
    # the one connection attempted went to the checked public address (refused by the test guard) ...
    assert refusals_since(before) == [guard_refusal(PUBLIC_ADDRESS, internal.port)]
    # ... and none to the address the name rebound to
    assert internal.hits == [] and resolver.lookups == 1


async def test_http_fetch_refuses_a_name_with_any_internal_address(
    pair: tuple[Host, Host], rebinding: Callable[..., Resolver]
) -> None:
    _site, internal = pair
    rebinding((PUBLIC_ADDRESS, INTERNAL_ADDRESS))
    before = len(network_guard.refused)
    result = await HttpFetchTool()({"url": f"http://{FAKE_NAME}:{internal.port}/secret"}, CTX)
    assert result.is_error and result.summary == "blocked destination" and "loopback" in result.content
    assert refusals_since(before) == [] and internal.hits == []


# --- run callbacks ---------------------------------------------------------------------------


async def deliver(tmp_path: Path, url: str, allowed: tuple[str, ...]) -> CallbackDelivery:
    """One delivery attempt of a queued callback to ``url`` through ``CallbackService``; the row after it."""
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'callbacks.db'}")
    try:
        await migrate(db)
        sessions = session_factory(db)
        async with sessions() as session:
            session.add(Workspace(id="ws_a", name="a"))
            await session.flush()  # the agent's foreign key needs the workspace first
            session.add(Agent(id="agt_1", workspace_id="ws_a", name="a", model="m", callback_url=url))
            session.add(
                CallbackDelivery(
                    id="cbd_1", workspace_id="ws_a", run_id="run_1", agent_id="agt_1", url=url,
                    event="run.finished", payload='{"type":"run.finished"}', status="pending", attempts=0,
                    next_attempt_at=0.0, log=[],
                )
            )  # fmt: skip
            await session.commit()
        service = CallbackService(sessions=sessions, allowed=allowed_networks(allowed), retry_base_s=3600)
        await service.deliver_due()
        async with sessions() as session:
            row = await session.get(CallbackDelivery, "cbd_1")
            assert row is not None
            return row
    finally:
        await db.dispose()


@pytest.mark.parametrize("allowed", [ALLOW_SITE, ("127.0.0.0/8",)], ids=["site allowed", "all loopback allowed"])
async def test_callbacks_never_follow_redirects(
    tmp_path: Path, pair: tuple[Host, Host], allowed: tuple[str, ...]
) -> None:
    site, internal = pair
    site.routes["/hook"] = (307, f"http://127.0.0.1:{internal.port}/hook")  # 307 keeps the POST and its body
    row = await deliver(tmp_path, f"{site.origin}/hook", allowed)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("pending", 1, 307, "HTTP 307")
    assert [(method, path) for method, path, _ in site.hits] == [("POST", "/hook")]
    assert internal.hits == []  # not followed, even where the guard would allow the target


async def test_callback_connects_to_the_checked_address_when_the_name_rebinds(
    tmp_path: Path, pair: tuple[Host, Host], rebinding: Callable[..., Resolver]
) -> None:
    site, internal = pair
    resolver = rebinding((SITE_ADDRESS,), (INTERNAL_ADDRESS,))
    row = await deliver(tmp_path, f"http://{FAKE_NAME}:{site.port}/hook", ALLOW_SITE)
    assert (row.status, row.last_status_code) == ("delivered", 200)
    assert site.hits == [("POST", "/hook", f"{FAKE_NAME}:{site.port}")]
    assert internal.hits == [] and resolver.lookups == 1


async def test_callback_rebinding_from_a_public_address_connects_only_to_it(
    tmp_path: Path, pair: tuple[Host, Host], rebinding: Callable[..., Resolver]
) -> None:
    _site, internal = pair
    resolver = rebinding((PUBLIC_ADDRESS,), (INTERNAL_ADDRESS,))
    before = len(network_guard.refused)
    row = await deliver(tmp_path, f"http://{FAKE_NAME}:{internal.port}/hook", ())
    assert row.status == "pending" and row.last_error is not None and row.last_error.startswith("ConnectError")
    assert refusals_since(before) == [guard_refusal(PUBLIC_ADDRESS, internal.port)]
    assert internal.hits == [] and resolver.lookups == 1


async def test_callback_to_a_name_with_an_internal_address_is_blocked(
    tmp_path: Path, pair: tuple[Host, Host], rebinding: Callable[..., Resolver]
) -> None:
    _site, internal = pair
    rebinding((PUBLIC_ADDRESS, INTERNAL_ADDRESS))
    before = len(network_guard.refused)
    row = await deliver(tmp_path, f"http://{FAKE_NAME}:{internal.port}/hook", ())
    assert row.last_error is not None and row.last_error.startswith("blocked:") and "loopback" in row.last_error
    assert refusals_since(before) == [] and internal.hits == []


# --- the Host header of a pinned request -----------------------------------------------------


@pytest.fixture
def ipv6_host() -> Iterator[Host]:
    class V6Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    host = Host("::1", name="v6")
    httpd = V6Server(("::1", 0), _handler(host))
    host.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield host
    httpd.shutdown()
    httpd.server_close()


async def test_pinned_requests_to_an_ipv6_literal_send_a_valid_host_header(tmp_path: Path, ipv6_host: Host) -> None:
    url = f"http://[::1]:{ipv6_host.port}/page"
    result = await HttpFetchTool(allowed_networks=["::1/128"])({"url": url}, CTX)
    assert not result.is_error and result.content.endswith("page of v6")
    row = await deliver(tmp_path, f"http://[::1]:{ipv6_host.port}/hook", ("::1/128",))
    assert row.status == "delivered"
    assert [h for _, _, h in ipv6_host.hits] == [f"[::1]:{ipv6_host.port}"] * 2  # RFC 7230: brackets kept
