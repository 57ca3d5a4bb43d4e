"""What an agent is (model, instructions, tools, knowledge, budgets) and what a run of one is started with."""

from __future__ import annotations

from typing import Literal

import msgspec

from engine.llm import Message

KNOWLEDGE_SEARCH = "knowledge_search"
HTTP_FETCH = "http_fetch"


class AgentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A runnable agent definition.

    Attributes:
        name: Shown in the ``execution`` event.
        model: litellm model name (``openai/gpt-4o-mini``, ``ragline/extractive``, ...).
        instructions: System prompt (holds no secrets: models can be made to print it).
        tools: Names of the tools this agent may call; the run gets only these.
        kb_ids: Knowledge bases ``knowledge_search`` reads, inside the caller's workspace.
        max_steps: Model calls per run; a run that still asks for tools after this fails.
        max_tokens: Token budget of the whole run (prompt + completion over all calls).
        timeout_s: Wall-clock budget of the whole run.
        temperature: Sampling temperature (``None``: provider default).
        context_window: Tokens the prompt may use; older turns are dropped to fit.
    """

    name: str
    model: str
    instructions: str = ""
    tools: tuple[str, ...] = (KNOWLEDGE_SEARCH,)
    kb_ids: tuple[str, ...] = ()
    max_steps: int = 8
    max_tokens: int | None = None
    timeout_s: float = 120.0
    temperature: float | None = None
    context_window: int = 8192


RunKind = Literal["chat", "agent", "trigger", "prompt", "workflow"]  # prompt: a playground or prompt execute run


class RunRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a run is started with, whoever starts it (chat, assistant, agent, trigger).

    ``spec.kb_ids`` must already be checked to lie in ``workspace_id``: tools only ever see that scope.
    """

    spec: AgentSpec
    user_input: str
    workspace_id: str
    kind: RunKind = "agent"
    history: tuple[Message, ...] = ()
    agent_id: str | None = None
    session_id: str | None = None
    user_message_id: str | None = None  # the stored chat message this run answers
    trigger_id: str | None = None
    user_id: str | None = None  # who starts it
    environment_id: str | None = None  # where it runs (variables and prompt versions come from there)
    run_id: str | None = None  # default: a new id
    prompt_id: str | None = None  # the prompt its messages came from (an agent bound to one, a prompt run)
    prompt_version: int | None = None  # that prompt's version (None: its draft, in the playground)
    event_id: str | None = None  # the workspace event that caused it (an automation's run)
    event_depth: int = 0  # automation hops that led here
