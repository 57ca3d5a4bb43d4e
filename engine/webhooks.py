"""Signed webhooks in the Standard Webhooks style, inbound (verify) and outbound (sign).

A message is signed with HMAC-SHA256 over ``"{id}.{timestamp}.{raw body}"``; the headers are
``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (space-separated
``v1,<base64 digest>`` entries, so a rotated secret can be sent alongside the old one). Secrets
are ``whsec_`` followed by the base64 of 32 random bytes; the HMAC key is the decoded bytes.
Verification refuses timestamps more than ``tolerance_s`` away from now (replay window) and
compares digests in constant time. ``parse_payload`` then reads an authentic body: a JSON object or array,
anything else (not UTF-8, not JSON, a bare scalar, empty, NUL characters) is ``WebhookPayloadError``.
No HTTP framework is involved: callers pass plain values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 5 * 60
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
MAX_ID_LENGTH = 200


class WebhookVerificationError(Exception):
    """The delivery is not authentic (missing, malformed, stale or wrong signature)."""


class WebhookPayloadError(ValueError):
    """The delivery is authentic but its body is not a JSON object or array Ragline can store."""


def new_secret() -> str:
    """A fresh signing secret (``whsec_`` + base64 of 32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a webhook secret") from exc


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message.

    Args:
        secret: The ``whsec_…`` secret shared with the other side.
        msg_id: The delivery id (the same on every retry of one delivery).
        timestamp: Unix seconds of this attempt.
        body: The exact bytes sent.
    """
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature(secret, msg_id, ts, body)}


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> str:
    """Check a delivery and return its ``webhook-id``. Raises ``WebhookVerificationError``.

    Args:
        secret: The trigger's ``whsec_…`` secret.
        headers: Request headers with lower-case names.
        body: The raw request body, exactly as received.
        now: The current time (Unix seconds); the clock by default.
        tolerance_s: How far the timestamp may lie from ``now``, either way.
    """
    msg_id = headers.get(ID_HEADER, "")
    stamp = headers.get(TIMESTAMP_HEADER, "")
    presented = headers.get(SIGNATURE_HEADER, "")
    if not msg_id or not stamp or not presented:
        raise WebhookVerificationError("missing webhook signature headers")
    if len(msg_id) > MAX_ID_LENGTH or not msg_id.isprintable():
        raise WebhookVerificationError("invalid webhook-id")
    if not stamp.isdigit() or len(stamp) > 12:
        raise WebhookVerificationError("invalid webhook-timestamp")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance window")
    expected = signature(secret, msg_id, timestamp, body).encode()
    matched = False
    for candidate in presented.split(" ")[:8]:  # bounded: a header of many entries costs little
        # compare every entry (no early exit), each in constant time
        matched |= hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise WebhookVerificationError("webhook signature does not match")
    return msg_id


def parse_payload(body: bytes) -> dict[str, Any] | list[Any]:
    """The JSON object or array an authentic delivery carries. Raises ``WebhookPayloadError``.

    Refused: an empty body, bytes that are not UTF-8, text that is not one JSON document (``NaN`` and
    ``Infinity`` are not JSON either), a bare scalar (``42``, ``"text"``, ``null``), nesting too deep to
    parse, and NUL characters in any string (which PostgreSQL and many log sinks cannot store).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookPayloadError("the webhook body is not valid UTF-8") from None
    if not text.strip():
        raise WebhookPayloadError("the webhook body is empty; send a JSON object or array")
    try:
        parsed = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise WebhookPayloadError("the webhook body is nested too deeply") from None
    except ValueError as exc:
        raise WebhookPayloadError(f"the webhook body is not valid JSON: {exc}") from None
    if not isinstance(parsed, (dict, list)):
        raise WebhookPayloadError("the webhook body must be a JSON object or array")
    if _has_nul(parsed):
        raise WebhookPayloadError("strings must not contain NUL characters (\\u0000)")
    return parsed


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_nul(value: Any) -> bool:
    pending = [value]
    while pending:  # iterative: a deep document must not exhaust the stack here either
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
