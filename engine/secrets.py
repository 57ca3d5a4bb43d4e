"""Credentials at rest: AES-256-GCM (``cryptography``), a key ring for rotation, the row bound as associated data.

A sealed value reads ``v1.<key id>.<base64url(nonce | ciphertext | tag)>``. The key id is the first 8 hex
characters of the key's SHA-256, so a value names the key that sealed it and rotation needs no bookkeeping:
``SecretBox`` holds the current key (seals) plus any number of old ones (open only), and ``reseal`` moves
a value to the current key. The associated data (``context``, e.g. ``"variable:var_…:value"``) binds a
ciphertext to its row and column: copied into another row it no longer opens.

Keys come from ``RAGLINE_SECRET_KEY`` (comma-separated base64 keys, the first is current) or, when unset,
from ``<data dir>/secret.key``, generated on first start with 0600 permissions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import EngineError

PREFIX = "v1"
KEY_FILE = "secret.key"
_NONCE = 12


class SecretKeyError(EngineError):
    """A sealed value cannot be opened (unknown key, tampered or moved ciphertext)."""

    code = "secret_unreadable"


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def decode_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("RAGLINE_SECRET_KEY holds keys in base64 (32 bytes each)") from exc
    if len(key) != 32:
        raise ValueError("a RAGLINE_SECRET_KEY key must be 32 bytes (base64 of 32 random bytes)")
    return key


class SecretBox:
    """Seals and opens credentials. ``keys[0]`` seals; every key opens what it sealed."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        self._current = keys[0]
        self._by_id = {key_id(k): AESGCM(k) for k in keys}
        self.current_id = key_id(self._current)

    def seal(self, plaintext: str, *, context: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._by_id[self.current_id].encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return f"{PREFIX}.{self.current_id}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, value: str, *, context: str) -> str:
        try:
            prefix, kid, body = value.split(".", 2)
            blob = base64.urlsafe_b64decode(body)
        except (ValueError, binascii.Error):
            raise SecretKeyError("a stored secret is not in the sealed format") from None
        cipher = self._by_id.get(kid) if prefix == PREFIX else None
        if cipher is None:
            raise SecretKeyError(f"a stored secret was sealed with key {kid}, which is not configured") from None
        try:
            return cipher.decrypt(blob[:_NONCE], blob[_NONCE:], context.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            raise SecretKeyError("a stored secret does not open (tampered, or moved to another row)") from None

    def is_current(self, value: str) -> bool:
        return value.startswith(f"{PREFIX}.{self.current_id}.")

    def reseal(self, value: str, *, context: str) -> str:
        """The value sealed with the current key (unchanged when it already is)."""
        return value if self.is_current(value) else self.seal(self.open(value, context=context), context=context)


def load_secret_box(configured: str, data_dir: Path) -> SecretBox:
    """Keys from ``configured`` (``RAGLINE_SECRET_KEY``), else from ``data_dir/secret.key`` (made if missing)."""
    if configured.strip():
        return SecretBox([decode_key(part) for part in configured.split(",") if part.strip()])
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{KEY_FILE}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(encode_key(new_key()) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:  # link, not rename: two processes starting at once keep one key, never a half-written file
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return SecretBox([decode_key(line) for line in path.read_text().split() if line.strip()])


def _write_keys(path: Path, keys: Sequence[bytes]) -> None:
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(encode_key(k) + "\n" for k in keys))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(draft, path)


def add_key(data_dir: Path) -> str:
    """Put a new key first in ``data_dir/secret.key`` (old keys stay, to open what they sealed); its id."""
    path = data_dir / KEY_FILE
    old = [decode_key(line) for line in path.read_text().split() if line.strip()] if path.exists() else []
    key = new_key()
    _write_keys(path, [key, *old])
    return key_id(key)


def drop_old_keys(data_dir: Path) -> int:
    """Keep only the current key in ``data_dir/secret.key`` (after everything was resealed); how many went."""
    path = data_dir / KEY_FILE
    keys = [decode_key(line) for line in path.read_text().split() if line.strip()]
    _write_keys(path, keys[:1])
    return len(keys) - 1
