"""Budgets: how often something may happen per key, in this process's memory (``limits``' moving window).

A ``Budget`` holds one or more limits (e.g. 10 a minute and 100 a day) and counts an event against all of them
only when every one still has room, so a refused attempt costs nothing. Beyond a limit, ``take`` raises
``RateLimited`` with the seconds until the event would be allowed (the API answers 429 with ``Retry-After``).
Counts live in this process: several server processes each keep their own.
"""

from __future__ import annotations

import time

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from engine.errors import RateLimited


class Budget:
    """``take(*key)`` counts one event for ``key`` against every limit, or raises ``RateLimited``."""

    def __init__(self, *limits: RateLimitItem, message: str) -> None:
        if not limits:
            raise ValueError("a budget needs at least one limit")
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._limits = limits
        self.message = message

    @classmethod
    def per_minute(cls, amount: int, *, message: str) -> Budget:
        return cls(RateLimitItemPerMinute(max(1, amount)), message=message)

    def wait(self, *key: str) -> float:
        """Seconds until one more event for ``key`` fits every limit (0: now)."""
        now = time.time()
        waits = [
            max(1.0, self._limiter.get_window_stats(item, *key).reset_time - now)
            for item in self._limits
            if not self._limiter.test(item, *key)
        ]
        return max(waits, default=0.0)

    def take(self, *key: str) -> None:
        """Count one event for ``key``; ``RateLimited`` (nothing counted) when any limit is spent.

        Test and hit run without an ``await`` in between, so concurrent requests of one event loop
        cannot both pass the last free slot.
        """
        wait = self.wait(*key)
        if wait:
            raise RateLimited(self.message, retry_after=wait)
        for item in self._limits:
            self._limiter.hit(item, *key)
