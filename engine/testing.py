"""Test doubles for the engine's ports (used by this project's tests and by embedders' tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio

from engine.errors import ModelError
from engine.llm import ModelEvent, ModelRequest
from engine.ports import ModelClient


class ScriptedModelClient:
    """A ``ModelClient`` that streams scripted ``ModelEvent``s, one script entry per call.

    An entry is a sequence of events, or a ``ModelError`` to raise instead. ``delay_s`` sleeps
    before each event (for cancellation and timeout tests). Every request is kept in ``calls``.
    """

    __test__ = False  # not a pytest test class despite the module name

    def __init__(self, steps: Sequence[Sequence[ModelEvent] | ModelError], *, delay_s: float = 0.0) -> None:
        self._steps = list(steps)
        self._delay_s = delay_s
        self.calls: list[ModelRequest] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        self.calls.append(request)
        index = len(self.calls) - 1
        if index >= len(self._steps):
            raise AssertionError(f"ScriptedModelClient got call {index + 1} but has {len(self._steps)} scripted")
        step = self._steps[index]
        if isinstance(step, ModelError):
            raise step
        for event in step:
            if self._delay_s:
                await anyio.sleep(self._delay_s)
            yield event

    def assert_complete(self) -> None:
        """Fail unless every scripted step was requested."""
        assert len(self.calls) == len(self._steps), f"{len(self.calls)} of {len(self._steps)} scripted calls made"


class StaticModelProvider:
    """A ``ModelProvider`` that answers every model name with one client (e.g. a ``ScriptedModelClient``)."""

    __test__ = False

    def __init__(self, client: ModelClient) -> None:
        self.client = client
        self.names: list[str] = []  # every name asked for, in order

    def get_model(self, name: str) -> ModelClient:
        self.names.append(name)
        return self.client

    def warm_up(self) -> None:
        return None
