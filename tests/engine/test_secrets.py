"""Secrets at rest: AES-256-GCM sealing bound to its row, the key ring, rotation and the generated key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.secrets import (
    SecretBox,
    SecretKeyError,
    add_key,
    decode_key,
    drop_old_keys,
    encode_key,
    load_secret_box,
    new_key,
)


def test_sealed_values_open_only_in_their_own_row() -> None:
    box = SecretBox([new_key()])
    sealed = box.seal("sk-live-123", context="variable:var_1:value")
    assert "sk-live-123" not in sealed and sealed.startswith(f"v1.{box.current_id}.")
    assert box.open(sealed, context="variable:var_1:value") == "sk-live-123"
    assert box.seal("sk-live-123", context="variable:var_1:value") != sealed  # a fresh nonce every time
    with pytest.raises(SecretKeyError):
        box.open(sealed, context="variable:var_2:value")  # copied into another row: refused
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretKeyError):
        box.open(tampered, context="variable:var_1:value")
    with pytest.raises(SecretKeyError):
        SecretBox([new_key()]).open(sealed, context="variable:var_1:value")  # an unknown key


def test_a_key_ring_opens_old_values_and_reseals_them_with_the_current_key() -> None:
    old, new = new_key(), new_key()
    sealed = SecretBox([old]).seal("token", context="c")
    ring = SecretBox([new, old])
    assert ring.open(sealed, context="c") == "token" and not ring.is_current(sealed)
    resealed = ring.reseal(sealed, context="c")
    assert ring.is_current(resealed) and SecretBox([new]).open(resealed, context="c") == "token"
    assert ring.reseal(resealed, context="c") == resealed


def test_the_key_file_is_generated_private_and_rotates(tmp_path: Path) -> None:
    box = load_secret_box("", tmp_path)
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_secret_box("", tmp_path).current_id == box.current_id  # the same key on the next start
    sealed = box.seal("v", context="c")
    new_id = add_key(tmp_path)
    rotated = load_secret_box("", tmp_path)
    assert rotated.current_id == new_id != box.current_id and rotated.open(sealed, context="c") == "v"
    assert drop_old_keys(tmp_path) == 1 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with pytest.raises(SecretKeyError):
        load_secret_box("", tmp_path).open(sealed, context="c")


def test_configured_keys_win_and_bad_ones_are_refused(tmp_path: Path) -> None:
    first, second = new_key(), new_key()
    box = load_secret_box(f"{encode_key(first)},{encode_key(second)}", tmp_path)
    assert box.current_id == SecretBox([first]).current_id and not (tmp_path / "secret.key").exists()
    assert decode_key(encode_key(first)) == first
    for bad in ("not base64!", encode_key(b"short")):
        with pytest.raises(ValueError):
            load_secret_box(bad, tmp_path)
