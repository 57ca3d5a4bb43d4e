"""Chat sessions and the built-in assistant: history in the metadata store, answers as recorded runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.agents import AgentService
from api.services.identity import Principal
from api.services.runs import RunService, RunStart
from engine.db.models import ChatMessage, ChatSession, new_id, now
from engine.db.paging import fetch_page
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.events import CitationEvent, RunEvent
from engine.ids import utc
from engine.llm import Message
from engine.run_records import FinishedHook, RunRecord
from ingest.views import Page

MAX_HISTORY_MESSAGES = 40


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    session_id: str  # the id the client uses: the one it chose (Prodgy's "my-session-01"), else ``id``
    agent_id: str | None
    user_id: str | None  # the member who opened it
    title: str
    kb_ids: list[str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: ChatSession) -> SessionInfo:
        return cls(
            id=row.id,
            session_id=row.client_key or row.id,
            agent_id=row.agent_id,
            user_id=row.user_id,
            title=row.title,
            kb_ids=list(row.kb_ids or []),
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )


class MessageInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    role: str
    content: str
    run_id: str | None
    citations: list[Any]
    created_at: datetime

    @classmethod
    def of(cls, row: ChatMessage) -> MessageInfo:
        return cls(
            id=row.id,
            role=row.role,
            content=row.content,
            run_id=row.run_id,
            citations=list(row.citations or []),
            created_at=utc(row.created_at),
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
        self,
        principal: Principal,
        *,
        agent_id: str | None,
        title: str,
        kb_ids: Sequence[str] | None,
        client_key: str | None = None,
    ) -> SessionInfo:
        if agent_id is not None:
            await self.agents.get(principal, agent_id)
        kbs = list(await self.runs.readable_kbs(principal, kb_ids)) if kb_ids is not None else []
        row = ChatSession(
            id=new_id("chat"), workspace_id=principal.workspace_id, user_id=principal.user_id, agent_id=agent_id,
            title=title, kb_ids=kbs, client_key=client_key,
        )  # fmt: skip
        async with self.sessions() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:  # the same client key, opened concurrently: continue that session
                raise Conflict(f"a chat session {client_key!r} already exists") from None
        return SessionInfo.of(row)

    async def _session(self, session: AsyncSession, principal: Principal, key: str) -> ChatSession:
        """A session by id or by the client's own id; another member's is missing unless the caller is an admin."""
        row = await session.get(ChatSession, key)
        if row is None or row.workspace_id != principal.workspace_id or not _may_read(principal, row):
            row = await session.scalar(select(ChatSession).where(
                ChatSession.workspace_id == principal.workspace_id, ChatSession.user_id == principal.user_id,
                ChatSession.client_key == key,
            ))  # fmt: skip
        if row is None:
            raise NotFound("chat session", key)
        return row

    async def get_session(self, principal: Principal, session_id: str) -> SessionInfo:
        async with self.sessions() as session:
            return SessionInfo.of(await self._session(session, principal, session_id))

    async def list_sessions(
        self, principal: Principal, *, page: int, limit: int, everyone: bool = False
    ) -> Page[SessionInfo]:
        """The caller's sessions (and sessions older than ownership); ``everyone``: every member's (admins)."""
        if everyone and not principal.has_role("admin"):
            raise PermissionDenied("only admins list every member's chat sessions")
        where = [ChatSession.workspace_id == principal.workspace_id]
        if not everyone:
            where.append(or_(ChatSession.user_id == principal.user_id, ChatSession.user_id.is_(None)))
        async with self.sessions() as session:
            order = [ChatSession.updated_at.desc(), ChatSession.id]
            total, rows = await fetch_page(session, ChatSession, where, order, page=page, limit=limit)
            return Page(items=[SessionInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def delete_session(self, principal: Principal, session_id: str) -> None:
        async with self.sessions() as session:
            await session.delete(await self._session(session, principal, session_id))
            await session.commit()

    async def messages(self, principal: Principal, session_id: str, *, page: int, limit: int) -> Page[MessageInfo]:
        async with self.sessions() as session:
            row = await self._session(session, principal, session_id)
            where = ChatMessage.session_id == row.id
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
            history = await self._history(session, chat.id)
            message = ChatMessage(session_id=chat.id, role="user", content=content)
            session.add(message)
            chat.updated_at = now()
            if not chat.title:
                chat.title = content.strip()[:80]
            await session.commit()
            agent_id, kb_ids = chat.agent_id, list(chat.kb_ids or [])
        start = RunStart(
            user_input=content, kind="chat", agent_id=agent_id, kb_ids=tuple(kb_ids) or None,
            history=tuple(history), session_id=chat.id, user_message_id=str(message.id),
        )  # fmt: skip
        return await self.runs.start(principal, start, on_finish=[self._store_answer(chat.id)])

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
        """The assistant: continue a session (by its id or the client's own) or open one; returns
        (session id, run id). A session id the caller has not used yet opens a session under that id."""
        if session_id is not None:
            try:
                return (await self.get_session(principal, session_id)).id, await self.post_message(
                    principal, session_id, content
                )
            except NotFound:
                pass
        try:
            created = await self.create_session(
                principal, agent_id=None, title="", kb_ids=kb_ids, client_key=session_id
            )
        except Conflict:  # opened by a concurrent request with the same client id: continue it
            created = await self.get_session(principal, session_id or "")
        return created.id, await self.post_message(principal, created.id, content)


def _may_read(principal: Principal, row: ChatSession) -> bool:
    """A member reads their own sessions (and those from before ownership); admins read every member's."""
    return row.user_id in (None, principal.user_id) or principal.has_role("admin")
