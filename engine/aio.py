"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol


class Waitable(Protocol):
    def wait(self) -> Awaitable[object]: ...


async def wait_until_set(event: Waitable, timeout_s: float) -> bool:
    """Wait for ``event`` at most ``timeout_s``; True when it was set.

    Why not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 it swallows a cancellation that arrives
    as the event fires (python/cpython#86296, fixed in 3.12), so a ``while True`` loop built on it can outlive
    its own ``task.cancel()`` and hang a shutdown forever (seen: a token revocation right before a test app
    stopped). ``asyncio.timeout`` lets the cancellation through.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
