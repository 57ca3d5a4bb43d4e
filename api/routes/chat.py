"""Chat sessions (history, post a message, stream the answer) and the built-in assistant."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from msgspec import Meta

from api.auth import VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo, stream_run
from api.schemas import Body
from api.services.chat import MessageInfo, SessionInfo
from api.services.identity import Principal

Text = Annotated[str, Meta(min_length=1, max_length=100_000)]
KbIds = Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=100)]


class SessionCreate(Body):
    agent_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    title: Annotated[str, Meta(max_length=200)] = ""
    kb_ids: KbIds | None = None


class MessageBody(Body):
    content: Text


# a session id the client chose (Prodgy's "my-session-01"), or one Ragline gave
SessionKey = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@-]+\Z")]


class AssistantBody(Body):
    message: Text
    session_id: SessionKey | None = None  # continue this session; an id not used yet opens one under it
    kb_ids: KbIds | None = None


class MessageAccepted(msgspec.Struct, frozen=True):
    session_id: str
    run_id: str
    execution_id: str


class ChatController(Controller):
    path = "/api/v1/chat/sessions"
    tags = ["chat"]

    @post("/", opt=VIEWER, summary="Open a chat session (with an agent, or the built-in assistant)")
    async def create_session(
        self, data: SessionCreate, services: Services, principal: Principal
    ) -> Envelope[SessionInfo]:
        return ok(
            await services.chat.create_session(principal, agent_id=data.agent_id, title=data.title, kb_ids=data.kb_ids),
            "Session created",
        )

    @get("/", opt=VIEWER, summary="List chat sessions")
    async def list_sessions(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20,
        whose: Annotated[Literal["mine", "all"], Parameter(query="scope")] = "mine",  # all: admins only
    ) -> ListEnvelope[SessionInfo]:
        result = await services.chat.list_sessions(principal, page=page, limit=limit, everyone=whose == "all")
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{session_id:str}", opt=VIEWER, summary="Get a chat session")
    async def get_session(self, session_id: str, services: Services, principal: Principal) -> Envelope[SessionInfo]:
        return ok(await services.chat.get_session(principal, session_id))

    @delete("/{session_id:str}", opt=VIEWER, status_code=200, summary="Delete a chat session and its history")
    async def delete_session(self, session_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.chat.delete_session(principal, session_id)
        return ok(None, "Session deleted")

    @get("/{session_id:str}/messages", opt=VIEWER, summary="The session's history, oldest first")
    async def list_messages(
        self, session_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 50
    ) -> ListEnvelope[MessageInfo]:
        result = await services.chat.messages(principal, session_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post(
        "/{session_id:str}/messages",
        opt=VIEWER,
        status_code=202,
        summary="Post a message; the answer runs in the background",
    )
    async def post_message(
        self, session_id: str, data: MessageBody, services: Services, principal: Principal
    ) -> Envelope[MessageAccepted]:
        run_id = await services.chat.post_message(principal, session_id, data.content)
        return ok(MessageAccepted(session_id=session_id, run_id=run_id, execution_id=run_id), "Message accepted")

    @post(
        "/{session_id:str}/messages/stream",
        opt=VIEWER,
        status_code=200,
        summary="Post a message and stream the answer (SSE)",
    )
    async def stream_message(
        self, session_id: str, data: MessageBody, services: Services, principal: Principal
    ) -> ServerSentEvent:
        run_id = await services.chat.post_message(principal, session_id, data.content)
        return stream_run(services, principal, run_id, 0)


class AssistantController(Controller):
    path = "/api/v1/assistant"
    tags = ["assistant"]

    @post(
        "/chat",
        opt=VIEWER,
        status_code=200,
        summary="Ask the knowledge assistant; the answer streams (SSE) with citations",
    )
    async def assistant_chat(self, data: AssistantBody, services: Services, principal: Principal) -> ServerSentEvent:
        _, run_id = await services.chat.assistant_message(
            principal, data.message, session_id=data.session_id, kb_ids=data.kb_ids
        )
        return stream_run(services, principal, run_id, 0)

    @get("/chat/history", opt=VIEWER, summary="A session's history, oldest first (by its id or the client's own)")
    async def assistant_history(
        self, services: Services, principal: Principal,
        session_id: Annotated[str, Parameter(query="session_id", min_length=1, max_length=200)],
        page: PageNo = 1, limit: Limit = 50,
    ) -> ListEnvelope[MessageInfo]:
        result = await services.chat.messages(principal, session_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/messages", opt=VIEWER, status_code=202, summary="Ask the assistant without streaming; follow the run by id")
    async def assistant_message(
        self, data: AssistantBody, services: Services, principal: Principal
    ) -> Envelope[MessageAccepted]:
        session_id, run_id = await services.chat.assistant_message(
            principal, data.message, session_id=data.session_id, kb_ids=data.kb_ids
        )
        return ok(MessageAccepted(session_id=session_id, run_id=run_id, execution_id=run_id), "Message accepted")
