"""``RunTrace``: what a run did, step by step, for the stored run record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.llm import ToolCall
from engine.types import TokenUsage


@dataclass
class RunTrace:
    """Filled by the loop as it runs; read by ``RunManager`` to store the run.

    ``steps`` holds one dict per model call (``kind="model"``) and per tool call (``kind="tool"``),
    in the order they finished, as JSON-ready values.
    """

    steps: list[dict[str, Any]] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    output: str = ""
    last_seq: int = 0

    def add_model_step(
        self,
        *,
        step: int,
        messages: int,
        output: str,
        tool_calls: tuple[ToolCall, ...],
        usage: TokenUsage,
        finish_reason: str,
        latency_ms: float,
    ) -> None:
        self.steps.append(
            {
                "kind": "model",
                "step": step,
                "messages": messages,
                "output": output,
                "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in tool_calls],
                "usage": {"prompt": usage.prompt, "completion": usage.completion, "total": usage.total},
                "finish_reason": finish_reason,
                "latency_ms": round(latency_ms, 3),
            }
        )

    def add_tool_step(
        self, *, step: int, call: ToolCall, arguments: Any, content: str, is_error: bool, latency_ms: float
    ) -> None:
        self.steps.append(
            {
                "kind": "tool",
                "step": step,
                "id": call.id,
                "name": call.name,
                "arguments": arguments,
                "content": content,
                "is_error": is_error,
                "latency_ms": round(latency_ms, 3),
            }
        )
