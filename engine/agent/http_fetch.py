"""``http_fetch``: read a public web page as text. Off unless an agent enables it.

Every hop (the first URL and each redirect) is resolved and checked by ``engine.net``; the
connection goes to the checked address with the original Host header and TLS SNI, so DNS is never
asked twice. Environment proxies are ignored (a proxy would make the check meaningless). Size and
time are bounded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx
import msgspec

from engine.agent.spec import HTTP_FETCH
from engine.errors import BlockedDestination
from engine.net import IPNetwork, resolve_url_async
from engine.ports import ToolContext, ToolResult


class _TextExtractor(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "head"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._skipping += tag in self.SKIP

    def handle_endtag(self, tag: str) -> None:
        self._skipping -= tag in self.SKIP and self._skipping > 0

    def handle_data(self, data: str) -> None:
        if not self._skipping and data.strip():
            self.parts.append(data.strip())


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    return "\n".join(parser.parts)


class FetchResult(msgspec.Struct, frozen=True):
    url: str
    status: int
    content_type: str
    text: str
    truncated: bool


async def fetch_text(
    url: str, *, max_bytes: int, max_redirects: int, timeout_s: float, allowed: Sequence[IPNetwork] = ()
) -> FetchResult:
    """GET ``url`` following redirects, each hop checked and pinned. Raises ``BlockedDestination``."""
    with anyio.fail_after(timeout_s):
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout_s) as client:
            for _hop in range(max_redirects + 1):
                target = await resolve_url_async(url, allowed=allowed)
                extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
                request = client.build_request("GET", target.pinned_url(), headers={"Host": target.host_header})
                request.extensions.update(extensions)
                response = await client.send(request, stream=True)
                try:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    return await _read(url, response, max_bytes)
                finally:
                    await response.aclose()
    raise BlockedDestination(f"more than {max_redirects} redirects")


async def _read(url: str, response: httpx.Response, max_bytes: int) -> FetchResult:
    body = bytearray()
    truncated = False
    async for part in response.aiter_bytes():
        body += part
        if len(body) > max_bytes:
            del body[max_bytes:]
            truncated = True
            break
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    text = body.decode(response.encoding or "utf-8", errors="replace")
    if content_type in ("text/html", "application/xhtml+xml"):
        text = html_to_text(text)
    return FetchResult(url=url, status=response.status_code, content_type=content_type, text=text, truncated=truncated)


class _Args(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str


class HttpFetchTool:
    """The ``http_fetch`` tool.

    Args:
        max_bytes: Body bytes read at most.
        max_chars: Text characters handed to the model at most.
        timeout_s: Whole fetch, redirects included.
        max_redirects: Redirect hops followed (each one re-checked).
        allowed_networks: Operator allowlist of internal networks (empty: public addresses only).
    """

    name = HTTP_FETCH
    description = "Fetch a public web page (http or https) and return its text."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "Absolute http(s) URL."}},
        "required": ["url"],
        "additionalProperties": False,
    }

    def __init__(
        self,
        *,
        max_bytes: int = 1_000_000,
        max_chars: int = 8_000,
        timeout_s: float = 10.0,
        max_redirects: int = 5,
        allowed_networks: Sequence[str] = (),
    ) -> None:
        self._max_bytes, self._max_chars = max_bytes, max_chars
        self._timeout_s, self._max_redirects = timeout_s, max_redirects
        self._allowed: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in allowed_networks)

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            url = msgspec.convert(args, _Args).url
            result = await fetch_text(
                url, max_bytes=self._max_bytes, max_redirects=self._max_redirects,
                timeout_s=self._timeout_s, allowed=self._allowed,
            )  # fmt: skip
        except msgspec.ValidationError as exc:
            return ToolResult(content=f"Invalid arguments: {exc}", summary="invalid arguments", is_error=True)
        except BlockedDestination as exc:
            return ToolResult(content=f"Blocked: {exc.message}", summary="blocked destination", is_error=True)
        except TimeoutError:
            return ToolResult(content="The fetch timed out.", summary="timed out", is_error=True)
        except httpx.HTTPError as exc:
            return ToolResult(content=f"Fetch failed: {type(exc).__name__}", summary="fetch failed", is_error=True)
        text = result.text[: self._max_chars]
        cut = result.truncated or len(result.text) > self._max_chars
        summary = f"HTTP {result.status}, {len(text)} chars" + (" (truncated)" if cut else "")
        content = f"URL: {result.url}\nHTTP status: {result.status}\n\n{text}" + ("\n[truncated]" if cut else "")
        return ToolResult(content=content, summary=summary, is_error=result.status >= 400)
