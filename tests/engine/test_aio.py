"""``wait_until_set``: a loop built on it stops when cancelled, even when the cancel meets the event firing."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest

from engine.aio import wait_until_set


async def _wait_for(event: asyncio.Event, timeout_s: float) -> bool:
    """The pattern it replaces: ``asyncio.wait_for`` over the event, its timeout suppressed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=timeout_s)
        return True
    return False


async def _stops_when_cancelled_as_the_event_fires(wait: Callable[[asyncio.Event, float], Awaitable[bool]]) -> bool:
    event = asyncio.Event()

    async def loop() -> None:
        while True:  # the shape of the live feed's, the worker's and the background loops
            await wait(event, 30.0)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)  # the loop now waits on the event
    event.set()  # a revocation wakes the loop ...
    task.cancel()  # ... in the same tick as the shutdown cancels it
    done, _ = await asyncio.wait([task], timeout=2.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait([task], timeout=2.0)
    return bool(done) and task.cancelled()


def test_a_cancel_arriving_with_the_event_stops_the_loop() -> None:
    assert asyncio.run(_stops_when_cancelled_as_the_event_fires(wait_until_set))


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for lets the cancel through from 3.12 on")
def test_the_replaced_pattern_really_swallowed_that_cancel() -> None:
    """Why the helper exists: on this Python, the wait_for pattern keeps looping after the cancel."""
    assert asyncio.run(_stops_when_cancelled_as_the_event_fires(_wait_for)) is False


def test_it_times_out_and_reports_a_set_event() -> None:
    async def both() -> tuple[bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_until_set(event, 0.01)
        event.set()
        return timed_out, await wait_until_set(event, 1.0)

    assert asyncio.run(both()) == (False, True)
