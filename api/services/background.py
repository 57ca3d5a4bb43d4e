"""One background loop shape for the scheduler and the callback sender: a pass, then sleep until due or woken."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from engine.aio import wait_until_set

log = logging.getLogger("ragline.background")


class Wakeup:
    """A shared "look again now" signal: whoever changes the work wakes the loop that does it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()


class PassLoop:
    """Runs ``one_pass`` repeatedly in a task; each pass returns the seconds until the next is due.

    ``wake()`` starts the next pass at once (e.g. after a change); a failing pass is logged and
    retried after ``error_delay_s``.
    """

    def __init__(
        self,
        name: str,
        one_pass: Callable[[], Awaitable[float]],
        *,
        error_delay_s: float,
        min_delay_s: float,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.name = name
        self._one_pass = one_pass
        self._error_delay_s = error_delay_s
        self._min_delay_s = min_delay_s
        self._wake = wakeup or Wakeup()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                delay = await self._one_pass()
            except Exception:
                log.exception("%s: pass failed", self.name)
                delay = self._error_delay_s
            self._wake.clear()
            await wait_until_set(self._wake, max(self._min_delay_s, delay))
