"""Claiming queued files for the ingest worker: several files per statement, one claimer at a time.

Uploads arrive one by one and each wakes the worker's preparers. Claiming on every wake cost one
``UPDATE ... RETURNING`` per file, and the preparer that lost the race ran one more that found nothing:
500 SciFact abstracts streamed in took 701 claim statements, 426 of them empty. The worker asks for a file
only when the embedder runs low (``ingest.worker.AHEAD_CHUNKS``), so files that upload meanwhile go in one
claim, and this class skips a claim that cannot find anything.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingest import queue
from ingest.pipeline import FileJob

# Files marked processing per claim (one statement, one commit); the preparers share them.
CLAIM_AT_ONCE = 8

OwnIndexLookup = Callable[[Collection[str]], Awaitable[set[str]]]
"""Which of the given knowledge bases have a live collection of their own."""


class Claimer:
    """Hands claimed files out one at a time; claims ``CLAIM_AT_ONCE`` more when none is left."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        own_index: OwnIndexLookup | None = None,
        *,
        poll_interval_s: float,
    ) -> None:
        self.sessions = sessions
        self.own_index = own_index
        self.poll_interval_s = poll_interval_s
        self._claimed: deque[FileJob] = deque()
        self._lock = asyncio.Lock()
        self._notices = 0  # uploads told so far
        self._drained: tuple[int, float] | None = None  # (notices, when) of the last claim that got too few

    def notice(self) -> None:
        """An upload was committed: the queue may hold a file again."""
        self._notices += 1

    @property
    def holding(self) -> bool:
        """Claimed files are waiting to be handed out."""
        return bool(self._claimed)

    def reset(self) -> None:
        """Forget held files (the worker stopped: they stay ``processing`` and are requeued at the next start)."""
        self._claimed.clear()
        self._drained = None

    async def next(self) -> FileJob | None:
        """The next claimed file, claiming more when none is left; None when the queue has nothing due.

        No claim while the last one came back short and nothing was uploaded since, for a poll interval:
        retries fall due and other processes upload without telling this one.
        """
        async with self._lock:
            if not self._claimed and self._may_find_more():
                seen = self._notices
                claimed = await self._claim(CLAIM_AT_ONCE)
                self._drained = (seen, time.monotonic()) if len(claimed) < CLAIM_AT_ONCE else None
                self._claimed.extend(claimed)
            return self._claimed.popleft() if self._claimed else None

    def _may_find_more(self) -> bool:
        if self._drained is None:
            return True
        seen, when = self._drained
        return self._notices != seen or time.monotonic() - when >= self.poll_interval_s

    async def _claim(self, limit: int) -> list[FileJob]:
        async with self.sessions() as session:
            claimed = await queue.claim(session, limit)
            await session.commit()
        if self.own_index is None or not claimed:
            return claimed
        # One read per claim, not one per file: which knowledge bases have their own index. A file claimed before
        # a swap commits may go to the old index; the swap catches up with such files once they are done.
        own = await self.own_index({file.kb_id for file in claimed})
        return [replace(file, own_index=True) if file.kb_id in own else file for file in claimed]
