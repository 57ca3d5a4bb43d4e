"""SSRF guard and http_fetch: real resolution of literal addresses and localhost, a real local server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network

import pytest

from engine.agent.http_fetch import HttpFetchTool
from engine.agent.registry import build_tools
from engine.agent.spec import AgentSpec
from engine.errors import BlockedDestination
from engine.net import check_url, resolve_url
from engine.ports import ToolContext

CTX = ToolContext(run_id="run_1", workspace_id="ws_a")

BLOCKED = [
    "http://127.0.0.1/",
    "http://localhost:8080/admin",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://224.0.0.1/",  # multicast
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:169.254.169.254]/",
    "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 wrapping 169.254.169.254
    "http://2130706433/",  # decimal 127.0.0.1
    "http://0x7f000001/",  # hex
    "http://0177.0.0.1/",  # octal
    "http://127.1/",  # short form
    "http://[fe80::1]/",  # link-local
    "http://240.0.0.1/",  # reserved
    "ftp://8.8.8.8/",
    "file:///etc/passwd",
    "http:///nohost",
    "http://[::1/",  # unclosed IPv6 literal: urlsplit's ValueError was a 500 (found by the OpenAPI fuzz test)
    "https://[8.8.8.8]/",  # brackets around an IPv4 address
    "http://host:99999/",  # port out of range
]


@pytest.mark.parametrize("url", BLOCKED)
def test_blocked_destinations(url: str) -> None:
    with pytest.raises(BlockedDestination):
        check_url(url)


def test_public_literals_pass() -> None:
    check_url("http://93.184.216.34/")
    target = resolve_url("https://8.8.8.8:8443/dns?q=1")
    assert (target.scheme, target.host, target.port, target.addresses) == ("https", "8.8.8.8", 8443, ("8.8.8.8",))
    check_url("http://[2606:4700:4700::1111]/")


def test_allowlist_is_explicit() -> None:
    check_url("http://127.0.0.1:9/", allowed=[ip_network("127.0.0.0/8")])
    with pytest.raises(BlockedDestination):
        check_url("http://10.0.0.1/", allowed=[ip_network("127.0.0.0/8")])


class _Site(BaseHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        routes = {
            "/page": (
                200,
                "text/html",
                b"<html><head><title>T</title><script>evil()</script></head>"
                b"<body><h1>Hello</h1><p>Public page text.</p></body></html>",
            ),
            "/big": (200, "text/plain", b"x" * 5000),
            "/to-metadata": (302, "http://169.254.169.254/latest/meta-data/", b""),
            "/to-page": (301, "/page", b""),
            "/loop": (302, "/loop", b""),
        }
        status, extra, body = routes.get(self.path, (404, "text/plain", b"missing"))
        self.send_response(status)
        if status in (301, 302):
            self.send_header("Location", extra)
        else:
            self.send_header("Content-Type", extra)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.anyio
async def test_http_fetch_blocks_loopback_by_default(site: str) -> None:
    result = await HttpFetchTool()({"url": f"{site}/page"}, CTX)
    assert result.is_error and result.summary == "blocked destination" and "loopback" in result.content


@pytest.mark.anyio
async def test_http_fetch_reads_text_and_rechecks_redirects(site: str) -> None:
    tool = HttpFetchTool(allowed_networks=["127.0.0.0/8", "::1/128"], max_bytes=1000)
    page = await tool({"url": f"{site}/to-page"}, CTX)
    assert not page.is_error and page.content.endswith("Hello\nPublic page text.") and "evil" not in page.content
    big = await tool({"url": f"{site}/big"}, CTX)
    assert big.summary == "HTTP 200, 1000 chars (truncated)"
    hop = await tool({"url": f"{site}/to-metadata"}, CTX)  # the second hop is checked too
    assert hop.is_error and "metadata" in hop.content
    loop = await tool({"url": f"{site}/loop"}, CTX)
    assert loop.is_error and "redirects" in loop.content
    assert (await tool({"url": f"{site}/nothing"}, CTX)).is_error
    assert (await tool({"url": "gopher://x"}, CTX)).is_error


def test_http_fetch_is_off_unless_enabled() -> None:
    spec = AgentSpec(name="a", model="m", tools=("knowledge_search", "http_fetch"))
    assert [t.name for t in build_tools(spec)] == []
    assert [t.name for t in build_tools(spec, http_fetch_enabled=True)] == ["http_fetch"]


@pytest.mark.parametrize(
    ("url", "address", "host_header", "pinned"),
    [
        ("http://example.com/a?b=1#frag", "93.184.216.34", "example.com", "http://93.184.216.34:80/a?b=1"),
        ("https://example.com:8443", "93.184.216.34", "example.com:8443", "https://93.184.216.34:8443/"),
        ("https://example.com:80/x", "2606:4700::1", "example.com:80", "https://[2606:4700::1]:80/x"),
        ("http://[2606:4700::1111]:8080/x", "2606:4700::1111", "[2606:4700::1111]:8080",
         "http://[2606:4700::1111]:8080/x"),
        ("https://[2606:4700::1111]/", "2606:4700::1111", "[2606:4700::1111]", "https://[2606:4700::1111]:443/"),
    ],
)
def test_pinned_url_and_host_header(url: str, address: str, host_header: str, pinned: str) -> None:
    from engine.net import Target, _split

    scheme, host, port = _split(url)
    target = Target(url=url, scheme=scheme, host=host, port=port, addresses=(address,))
    assert (target.host_header, target.pinned_url()) == (host_header, pinned)
