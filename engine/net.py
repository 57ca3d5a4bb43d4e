"""Outbound request guard (SSRF): only public unicast destinations, checked after DNS resolution.

Used by the ``http_fetch`` tool and by outbound webhooks. A hostname is resolved and every address
it resolves to is checked; callers then connect to a checked address (never re-resolving), so a
DNS rebind between check and connect cannot redirect the request. Numeric host forms (decimal
``2130706433``, octal ``0177.0.0.1``, hex, short ``127.1``) are resolved by the same resolver the
connection would use, so they are checked as the address they really mean.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread

from engine.errors import BlockedDestination

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to one of ``addresses``, send ``host`` as Host/SNI."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        """The ``Host`` header for ``url`` (RFC 9110: an IPv6 literal in brackets, the default port left out)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"

    def pinned_url(self, url: str | None = None) -> str:
        """``url`` (default: the checked one, of the same host) sent to the first checked address:
        connecting there never asks DNS again. Send ``host_header`` as Host (and ``host`` as TLS SNI)."""
        parts = urlsplit(url or self.url)
        address = self.addresses[0]
        literal = f"[{address}]" if ipaddress.ip_address(address.split("%", 1)[0]).version == 6 else address
        return urlunsplit((parts.scheme, f"{literal}:{self.port}", parts.path or "/", parts.query, ""))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``ip`` may not be contacted (``None``: it may). ``allowed`` networks are exempt."""
    if any(ip in net for net in allowed):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return blocked_reason(inner, allowed)
    if ip in _METADATA:
        return "cloud metadata address"
    checks = (
        (ip.is_unspecified, "unspecified address"),
        (ip.is_loopback, "loopback address"),
        (ip.is_link_local, "link-local address"),
        (ip.is_multicast, "multicast address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "carrier-grade NAT address"),
        (ip.is_private, "private address"),
        (ip.is_reserved, "reserved address"),
        (not ip.is_global, "non-public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _split(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unclosed or malformed IPv6 literal ("http://[::1")
        raise BlockedDestination(f"invalid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BlockedDestination(f"scheme {scheme or '(none)'!r} is not allowed")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise BlockedDestination("invalid port") from exc
    if not host:
        raise BlockedDestination("URL has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedDestination(f"cannot resolve host {host!r}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_url(url: str, *, allowed: Sequence[IPNetwork] = ()) -> Target:
    """Resolve ``url``'s host and check every address. Raises ``BlockedDestination``."""
    scheme, host, port = _split(url)
    addresses = _resolve(host, port)
    if not addresses:
        raise BlockedDestination(f"host {host!r} has no address")
    for address in addresses:
        reason = blocked_reason(ipaddress.ip_address(address.split("%", 1)[0]), allowed)
        if reason:
            raise BlockedDestination(f"destination {host!r} is a {reason}")
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


def allowed_networks(names: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Parse an operator's allow-list (``"127.0.0.1/32"``, ``"10.0.0.0/8"``) into networks."""
    return tuple(ipaddress.ip_network(name.strip(), strict=False) for name in names if name.strip())


def check_url(url: str, *, allowed: Sequence[IPNetwork] = ()) -> None:
    """Raise ``BlockedDestination`` unless ``url`` is http(s) to public addresses only (blocking DNS)."""
    resolve_url(url, allowed=allowed)


async def resolve_url_async(url: str, *, allowed: Sequence[IPNetwork] = ()) -> Target:
    """``resolve_url`` off the event loop (DNS may block)."""
    return await anyio.to_thread.run_sync(lambda: resolve_url(url, allowed=allowed))
