"""Engine error hierarchy. Only ``api/`` maps these to HTTP status codes."""

from __future__ import annotations


class EngineError(Exception):
    """Base error: ``code`` is a stable machine-readable string; ``summary`` (short) and ``message`` are for people."""

    code = "engine_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def summary(self) -> str:
        """One short line saying what was refused (the envelope's ``error``)."""
        return self.message[:1].upper() + self.message[1:]


class InvalidInput(EngineError):
    code = "invalid_input"


class NotFound(EngineError):
    code = "not_found"

    def __init__(self, kind: str, ident: str | None = None) -> None:
        super().__init__(f"The requested {kind} does not exist")
        self.kind = kind
        self.ident = ident

    @property
    def summary(self) -> str:
        return f"{self.kind[:1].upper()}{self.kind[1:]} not found"  # "Agent not found"


class Conflict(EngineError):
    code = "conflict"


class PermissionDenied(EngineError):
    code = "forbidden"


class PayloadTooLarge(EngineError):
    code = "payload_too_large"


class UnsupportedMediaType(EngineError):
    code = "unsupported_media_type"


class RateLimited(EngineError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelError(EngineError):
    """The model provider failed (HTTP error, timeout, malformed stream)."""

    code = "model_error"


class BlockedDestination(EngineError):
    """An outbound URL resolves to a loopback, private, link-local or metadata address."""

    code = "blocked_destination"


class Unavailable(EngineError):
    """A dependency (the metadata database) is locked, unreachable or out of connections; retry shortly."""

    code = "unavailable"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float = 1.0, summary: str = "Service unavailable"
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self._summary = summary

    @property
    def summary(self) -> str:
        return self._summary


class StorageFull(EngineError):
    """No space left (disk full, quota or file-size limit) while storing data; nothing partial was kept."""

    code = "insufficient_storage"

    @property
    def summary(self) -> str:
        return "Insufficient storage"
