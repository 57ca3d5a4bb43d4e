"""Content-addressed original files on disk: keys are sha256 digests chosen by the server, never user names."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from engine.errors import PayloadTooLarge, StorageFull

_COPY_BLOCK = 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _storage_full(exc: OSError) -> StorageFull | None:
    if exc.errno not in _FULL_ERRNOS:
        return None
    return StorageFull(f"not enough storage space to keep the file ({os.strerror(exc.errno or 0).lower()})")


class BlobStore:
    """Stores bytes under ``root/ab/cd/<sha256>``; writes are atomic (temp file, fsync, rename, fsync dir)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("blob key must be a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_stream(self, source: BinaryIO, *, max_bytes: int) -> tuple[str, int]:
        """Copy ``source`` into the store while hashing; returns ``(sha256, size)``.

        Raises ``PayloadTooLarge`` as soon as more than ``max_bytes`` arrive, and ``StorageFull`` when the disk,
        a quota or a file-size limit stops the write (ENOSPC, EDQUOT, EFBIG); either way nothing is kept.
        """
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp)
        except OSError as exc:
            full = _storage_full(exc)
            if full is None:
                raise
            raise full from exc
        tmp = Path(tmp_name)
        try:
            return self._fill(fd, tmp, source, max_bytes)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            full = _storage_full(exc) if isinstance(exc, OSError) else None
            if full is not None:
                raise full from exc
            raise

    def _fill(self, fd: int, tmp: Path, source: BinaryIO, max_bytes: int) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            while block := source.read(_COPY_BLOCK):
                size += len(block)
                if size > max_bytes:
                    raise PayloadTooLarge(f"file is larger than the {max_bytes} byte limit")
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        key = digest.hexdigest()
        final = self.path_for(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        return key, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        import io

        return self.put_stream(io.BytesIO(data), max_bytes=len(data))

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(sha256).unlink()

    def keys(self) -> Iterator[str]:
        for path in self.root.glob("??/??/*"):
            if path.is_file() and len(path.name) == 64:
                yield path.name

    def clean_tmp(self) -> None:
        """Remove partial writes left by a crash (nothing in tmp/ was ever acknowledged)."""
        for path in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                path.unlink()
