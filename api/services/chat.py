"""Chat sessions and the built-in assistant: history in the metadata store, answers as recorded runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.agents import AgentService
from api.services.identity import Principal
from api.services.runs import RunService, RunStart
from engine.db.models import ChatMessage, ChatSession, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import InvalidInput
from engine.events import CitationEvent, RunEvent
from engine.llm import Message
from engine.runs import FinishedHook, RunRecord
from ingest.views import Page

MAX_HISTORY_MESSAGES = 40


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    agent_id: str | None
    title: str
    kb_ids: list[str]
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: ChatSession) -> SessionInfo:
        return cls(
            id=row.id,
            agent_id=row.agent_id,
            title=row.title,
            kb_ids=list(row.kb_ids or []),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class MessageInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    role: str
    content: str
    run_id: str | None
    citations: list[Any]
    created_at: float

    @classmethod
    def of(cls, row: ChatMessage) -> MessageInfo:
        return cls(
            id=row.id,
            role=row.role,
            content=row.content,
            run_id=row.run_id,
            citations=list(row.citations or []),
            created_at=row.created_at,
        )


class ChatService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        runs: RunService,
        agents: AgentService,
    ) -> None:
        self.sessions = sessions
        self.runs = runs
        self.agents = agents

    async def create_session(
        self, principal: Principal, *, agent_id: str | None, title: str, kb_ids: Sequence[str] | None
    ) -> SessionInfo:
        if agent_id is not None:
            await self.agents.get(principal, agent_id)
        kbs = list(await self.runs.readable_kbs(principal, kb_ids)) if kb_ids is not None else []
        row = ChatSession(
            id=new_id("chat"), workspace_id=principal.workspace_id, agent_id=agent_id, title=title, kb_ids=kbs
        )
        async with self.sessions() as session:
            session.add(row)
            await session.commit()
        return SessionInfo.of(row)

    async def _session(self, session: AsyncSession, principal: Principal, session_id: str) -> ChatSession:
        return await get_in_workspace(session, ChatSession, session_id, principal.workspace_id, "chat session")

    async def get_session(self, principal: Principal, session_id: str) -> SessionInfo:
        async with self.sessions() as session:
            return SessionInfo.of(await self._session(session, principal, session_id))

    async def list_sessions(self, principal: Principal, *, page: int, limit: int) -> Page[SessionInfo]:
        where = ChatSession.workspace_id == principal.workspace_id
        async with self.sessions() as session:
            order = [ChatSession.updated_at.desc()]
            total, rows = await fetch_page(session, ChatSession, [where], order, page=page, limit=limit)
            return Page(items=[SessionInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def delete_session(self, principal: Principal, session_id: str) -> None:
        async with self.sessions() as session:
            await session.delete(await self._session(session, principal, session_id))
            await session.commit()

    async def messages(self, principal: Principal, session_id: str, *, page: int, limit: int) -> Page[MessageInfo]:
        async with self.sessions() as session:
            await self._session(session, principal, session_id)
            where = ChatMessage.session_id == session_id
            total, rows = await fetch_page(session, ChatMessage, [where], [ChatMessage.id], page=page, limit=limit)
            return Page(items=[MessageInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def _history(self, session: AsyncSession, session_id: str) -> list[Message]:
        rows = list(
            await session.scalars(
                select(ChatMessage)
                .where(ChatMessage.session_id == session_id)
                .order_by(ChatMessage.id.desc())
                .limit(MAX_HISTORY_MESSAGES)
            )
        )
        return [Message(role="user" if r.role == "user" else "assistant", content=r.content) for r in reversed(rows)]

    async def post_message(self, principal: Principal, session_id: str, content: str) -> str:
        """Store the user's message and start the run that answers it; returns the run id."""
        if not content.strip():
            raise InvalidInput("message must not be empty")
        async with self.sessions() as session:
            chat = await self._session(session, principal, session_id)
            history = await self._history(session, session_id)
            session.add(ChatMessage(session_id=session_id, role="user", content=content))
            chat.updated_at = now()
            if not chat.title:
                chat.title = content.strip()[:80]
            await session.commit()
            agent_id, kb_ids = chat.agent_id, list(chat.kb_ids or [])
        start = RunStart(
            user_input=content, kind="chat", agent_id=agent_id, kb_ids=tuple(kb_ids) or None,
            history=tuple(history), session_id=session_id,
        )  # fmt: skip
        return await self.runs.start(principal, start, on_finish=[self._store_answer(session_id)])

    def _store_answer(self, session_id: str) -> FinishedHook:
        """The finished hook that stores the answer and its citations (before ``done`` is published)."""

        async def hook(record: RunRecord, events: Sequence[RunEvent]) -> None:
            if record.status != "succeeded" or record.output is None:
                return
            citations = [msgspec.to_builtins(e) for e in events if isinstance(e, CitationEvent)]
            async with self.sessions() as session:
                if await session.get(ChatSession, session_id) is None:
                    return  # the session was deleted meanwhile
                answer = ChatMessage(
                    session_id=session_id, role="assistant", content=record.output, run_id=record.id,
                    citations=citations,
                )  # fmt: skip
                session.add(answer)
                await session.commit()

        return hook

    async def assistant_message(
        self, principal: Principal, content: str, *, session_id: str | None, kb_ids: Sequence[str] | None
    ) -> tuple[str, str]:
        """The assistant: continue a session or open one; returns (session id, run id)."""
        if session_id is None:
            created = await self.create_session(principal, agent_id=None, title="", kb_ids=kb_ids)
            session_id = created.id
        return session_id, await self.post_message(principal, session_id, content)
