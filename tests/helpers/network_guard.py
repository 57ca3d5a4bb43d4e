"""Tests never reach the network beyond loopback (like pydantic-ai's ``ALLOW_MODEL_REQUESTS = False``).

``install()`` adds an audit hook (``sys.addaudithook``, PEP 578) that refuses, at once and with a clear message:

- ``socket.connect`` / ``connect_ex`` / ``sendto`` / ``sendmsg`` on AF_INET/AF_INET6 sockets to any address
  that is not loopback (127.0.0.0/8, ::1, ::ffff:127.x); AF_UNIX and other families pass;
- ``socket.getaddrinfo`` of a host name other than localhost (``*.localhost``) or this machine's own name:
  a lookup is already network traffic (DNS). Numeric hosts pass; their connect is checked.

Refusals raise ``NetworkGuardError`` (a ``ConnectionRefusedError``; for a name lookup also a ``socket.gaierror``,
what an offline machine raises) and are recorded in ``refused``, so a library that swallows the error is still
reported (``tests/conftest.py`` prints them at the end of the session). Audit hooks cannot be removed: once
installed, the guard holds for the life of the process; installing twice is a no-op.

Real subprocesses get it through this module as a launcher, in place of ``python -m MODULE ARGS``::

    python -m tests.helpers.network_guard MODULE ARGS...
"""

from __future__ import annotations

import ipaddress
import runpy
import socket
import sys
import threading
from typing import Any

ALLOWED = "tests may only reach 127.0.0.1"
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
CHECKED_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"})

refused: list[str] = []  # every refusal in this process, in order
_lock = threading.Lock()
_installed = False
_echo = False  # also print refusals to stderr (launcher: they land in the server log)
_own_names: frozenset[str] = frozenset()


class NetworkGuardError(ConnectionRefusedError):
    """A connection the test guard refused (the destination is not loopback)."""


class NameLookupRefused(NetworkGuardError, socket.gaierror):
    """A DNS lookup the test guard refused (also a ``socket.gaierror``, as on an offline machine)."""


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a numeric host stands for, None for a name.

    The C resolver also takes the legacy IPv4 forms (``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1``)
    as numbers, without DNS (``inet_aton``); they count as the address they spell.
    """
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or any(c.isspace() for c in text) or not text[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def is_loopback_host(host: str) -> bool:
    """True for a loopback IP literal (IPv4-mapped included) or a localhost name."""
    name = host.strip("[]").rstrip(".").lower()
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    ip = ip_literal(host)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _refuse(error: type[NetworkGuardError], what: str) -> None:
    message = f"test guard: {what} refused ({ALLOWED})"
    with _lock:
        refused.append(message)
    if _echo:
        print(message, file=sys.stderr, flush=True)
    raise error(message)


def _endpoint(host: str, port: object) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_address(sock: Any, address: Any, verb: str) -> None:
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX, netlink, ...: not the network
    if not isinstance(address, tuple) or not address:
        return
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host)
    if not is_loopback_host(host):
        port = address[1] if len(address) > 1 else "?"
        _refuse(NetworkGuardError, f"{verb} to {_endpoint(host, port)}")


def _check_lookup(host: Any) -> None:
    if host is None:
        return
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host)
    if not host or ip_literal(host) is not None or is_loopback_host(host):
        return  # numeric: no DNS traffic; the connect that follows is checked
    if host.rstrip(".").lower() in _own_names:
        return  # this machine's own name (/etc/hosts)
    _refuse(NameLookupRefused, f"name lookup of {host!r}")


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in CHECKED_EVENTS:
        return
    if event == "socket.getaddrinfo":
        _check_lookup(args[0])
    elif event == "socket.connect":
        _check_address(args[0], args[1], "connection")
    else:  # sendto / sendmsg: datagrams (address None: a connected socket, already checked)
        _check_address(args[0], args[1], "datagram")


def install() -> None:
    """Refuse non-loopback network access in this process from now on (idempotent)."""
    global _installed, _own_names
    with _lock:
        if _installed:
            return
        _installed = True
    _own_names = frozenset({socket.gethostname().lower()})
    sys.addaudithook(_hook)


def installed() -> bool:
    return _installed


def main(argv: list[str]) -> None:
    """``python -m tests.helpers.network_guard MODULE ARGS...``: run ``MODULE`` as ``__main__`` under the guard."""
    if not argv:
        raise SystemExit("usage: python -m tests.helpers.network_guard MODULE [ARGS...]")
    global _echo
    _echo = True
    install()
    sys.argv = argv[:]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    # the importable module (not this __main__ copy) holds the state, so later imports see it installed
    from tests.helpers import network_guard as _guard

    _guard.main(sys.argv[1:])
