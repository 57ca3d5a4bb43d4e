"""Agent loop overhead: time to first event and per-event cost, loop vs the raw litellm stream.

The same scripted stream (a local OpenAI-compatible server, ``tests/helpers/openai_server.py``)
is read four ways, interleaved, several times each; medians are reported:

- ``litellm_raw``: ``litellm.acompletion(stream=True)`` iterated directly (the baseline);
- ``model_client``: ``LiteLLMModelClient.stream`` (chunk -> ModelEvent);
- ``run_agent``: the agent loop over that client (ModelEvent -> RunEvent, trace, budgets);
- ``run_manager``: a background run with SQLite persistence, read through ``subscribe``;
- ``answer_no_tools`` / ``answer_tools_offered``: a prose answer streamed word by word at a model's pace
  (``--word-delay-ms``), through a background run, without and with a tool on offer. With a tool on offer
  the loop may hold text until it reads like an answer (a preamble to tool calls becomes ``thinking``):
  their difference is what the content/thinking split costs the first ``content`` frame.

Plus the loop alone without HTTP: ``ScriptedModelClient`` with N deltas, iterated directly vs
through ``run_agent``. Usage: ``python benchmarks/agent_overhead.py [--chunks 200] [--repeats 15]``.
Prints one JSON object and a table, and writes the object to ``--out``/agent_overhead.json.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio

import engine  # noqa: F401  (offline environment before litellm)
from benchmarks._results import add_out_argument, finish, run_info, write
from engine.agent.loop import run_agent
from engine.agent.spec import AgentSpec
from engine.agent.tools import function_tool
from engine.agent.trace import RunTrace
from engine.db.run_store import SqlRunStore
from engine.db.session import create_engine, migrate, session_factory
from engine.events import ContentEvent
from engine.llm import Finish, Message, ModelRequest, TextDelta, UsageReport
from engine.models.litellm_client import LiteLLMModelClient, configure_litellm
from engine.ports import ToolContext
from engine.runs import RunManager, RunRequest
from engine.testing import ScriptedModelClient
from tests.helpers.openai_server import Reply, scripted_server

Timing = tuple[float, float, int]  # first content (s), total (s), content events
SPEC = AgentSpec(name="bench", model="openai/scripted", tools=(), timeout_s=60)


async def _timed(events: AsyncIterator[Any], is_content: Callable[[Any], bool]) -> Timing:
    t0 = time.perf_counter()
    first, count = 0.0, 0
    async for item in events:
        if is_content(item):
            count += 1
            if count == 1:
                first = time.perf_counter() - t0
    return first, time.perf_counter() - t0, count


async def _litellm_raw(base_url: str) -> AsyncIterator[Any]:
    litellm = configure_litellm()
    response = await litellm.acompletion(
        model="openai/scripted", api_base=base_url, api_key="sk-bench", stream=True,
        messages=[{"role": "user", "content": "go"}], stream_options={"include_usage": True}, max_retries=0,
    )  # fmt: skip
    async for chunk in response:
        yield chunk


def _raw_has_text(chunk: Any) -> bool:
    return bool(chunk.choices and chunk.choices[0].delta.content)


def _ctx() -> ToolContext:
    return ToolContext(run_id="run_bench", workspace_id="ws")


async def _loop(client: Any) -> AsyncIterator[Any]:
    if "request" in inspect.signature(run_agent).parameters:  # run_agent(request, ...) since the RunRequest change
        events = run_agent(
            RunRequest(spec=SPEC, user_input="go", workspace_id="ws"), tools=[], model=client, run_id="run_bench",
            ctx=_ctx(), trace=RunTrace(),
        )  # fmt: skip
    else:  # the earlier signature, so this script also measures older commits
        events = run_agent(  # type: ignore[call-arg]
            SPEC, history=[], user_input="go", tools=[], model=client, run_id="run_bench", ctx=_ctx(), trace=RunTrace()
        )
    async for event in events:
        yield event


PROSE = (
    "Refunds are accepted within thirty days of purchase. Bring the receipt and the original packaging. "
    "Store credit is offered for items bought on sale. Delivery fees are not refunded. "
) * 3


async def bench_answer_paths(word_delay_ms: float, repeats: int) -> dict[str, dict[str, float]]:
    """First content of a prose answer streamed at a model's pace, with no tool on offer and with one."""
    words = PROSE.split(" ")
    reply = Reply(text=PROSE, split=len(words), delay_s=word_delay_ms / 1000)
    tool = function_tool(_lookup)
    with scripted_server(default=lambda i: reply) as server:
        client = LiteLLMModelClient(api_base=server.base_url, api_key="sk-bench", max_retries=0)
        with tempfile.TemporaryDirectory() as tmp:
            db = create_engine(f"sqlite+aiosqlite:///{tmp}/bench.db")
            await migrate(db)
            async with RunManager(SqlRunStore(session_factory(db))) as manager:

                async def answer(tools: list[Any]) -> AsyncIterator[Any]:
                    spec = AgentSpec(name="bench", model="openai/scripted", tools=tuple(t.name for t in tools))
                    run_id = await manager.start(RunRequest(spec=spec, user_input="go", workspace_id="ws"),
                                                 model=client, tools=tools)
                    async for event in manager.subscribe(run_id):
                        yield event

                ways: dict[str, Callable[[], Awaitable[Timing]]] = {
                    "answer_no_tools": lambda: _timed(answer([]), lambda e: isinstance(e, ContentEvent)),
                    "answer_tools_offered": lambda: _timed(answer([tool]), lambda e: isinstance(e, ContentEvent)),
                }
                samples: dict[str, list[Timing]] = {name: [] for name in ways}
                for way in ways.values():  # warm-up
                    await way()
                for _ in range(repeats):
                    for name, way in ways.items():
                        samples[name].append(await way())
            await db.dispose()
    return {name: _median(s) for name, s in samples.items()}


def _lookup(city: str) -> str:
    """Weather for a city (never called: the scripted model answers without tools)."""
    return city


def _median(samples: list[Timing]) -> dict[str, float]:
    firsts, totals = [s[0] for s in samples], [s[1] for s in samples]
    n = samples[0][2]
    return {
        "first_content_ms": round(statistics.median(firsts) * 1000, 3),
        "total_ms": round(statistics.median(totals) * 1000, 3),
        "content_events": n,
        "per_event_us": round(statistics.median(totals) / max(n, 1) * 1e6, 2),
    }


async def bench_http(chunks: int, repeats: int) -> dict[str, dict[str, float]]:
    with scripted_server(default=lambda i: Reply(text="x" * chunks, split=chunks)) as server:
        client = LiteLLMModelClient(api_base=server.base_url, api_key="sk-bench", max_retries=0)
        request = ModelRequest(model="openai/scripted", messages=(Message(role="user", content="go"),))
        with tempfile.TemporaryDirectory() as tmp:
            db = create_engine(f"sqlite+aiosqlite:///{tmp}/bench.db")
            await migrate(db)
            store = SqlRunStore(session_factory(db))
            async with RunManager(store) as manager:

                async def managed() -> AsyncIterator[Any]:
                    request = RunRequest(spec=SPEC, user_input="go", workspace_id="ws")
                    run_id = await manager.start(request, model=client, tools=[])
                    async for event in manager.subscribe(run_id):
                        yield event

                ways: dict[str, Callable[[], Awaitable[Timing]]] = {
                    "litellm_raw": lambda: _timed(_litellm_raw(server.base_url), _raw_has_text),
                    "model_client": lambda: _timed(client.stream(request), lambda e: isinstance(e, TextDelta)),
                    "run_agent": lambda: _timed(_loop(client), lambda e: isinstance(e, ContentEvent)),
                    "run_manager": lambda: _timed(managed(), lambda e: isinstance(e, ContentEvent)),
                }
                samples: dict[str, list[Timing]] = {name: [] for name in ways}
                for _ in range(2):  # warm-up: lazy imports, connection setup
                    for way in ways.values():
                        await way()
                for _ in range(repeats):
                    for name, way in ways.items():
                        samples[name].append(await way())
            await db.dispose()
    return {name: _median(s) for name, s in samples.items()}


async def bench_inprocess(events: int, repeats: int) -> dict[str, dict[str, float]]:
    script = [*(TextDelta("x") for _ in range(events)), UsageReport(1, events), Finish("stop")]
    request = ModelRequest(model="m", messages=())
    samples: dict[str, list[Timing]] = {"scripted_direct": [], "scripted_run_agent": []}
    for _ in range(repeats):
        direct = ScriptedModelClient([script]).stream(request)
        samples["scripted_direct"].append(await _timed(direct, lambda e: isinstance(e, TextDelta)))
        looped = _loop(ScriptedModelClient([script]))
        samples["scripted_run_agent"].append(await _timed(looped, lambda e: isinstance(e, ContentEvent)))
    return {name: _median(s) for name, s in samples.items()}


def _table(results: dict[str, dict[str, float]]) -> str:
    lines = [f"{'path':<20} {'first content ms':>17} {'total ms':>10} {'events':>7} {'us/event':>9}"]
    for name, r in results.items():
        lines.append(
            f"{name:<20} {r['first_content_ms']:>17.3f} {r['total_ms']:>10.3f} "
            f"{r['content_events']:>7.0f} {r['per_event_us']:>9.2f}"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--inprocess-events", type=int, default=2000)
    parser.add_argument("--word-delay-ms", type=float, default=10.0, help="pause between streamed words")
    add_out_argument(parser)
    args = parser.parse_args()
    out = args.out
    del args.out  # params below are the measurement's parameters
    run = run_info()
    http = await bench_http(args.chunks, args.repeats)
    http.update(await bench_answer_paths(args.word_delay_ms, args.repeats))
    local = await bench_inprocess(args.inprocess_events, args.repeats)
    raw, loop = http["litellm_raw"], http["run_agent"]
    summary = {
        "loop_vs_litellm_first_content_ms": round(loop["first_content_ms"] - raw["first_content_ms"], 3),
        "loop_vs_litellm_per_event_us": round(
            (loop["total_ms"] - raw["total_ms"]) * 1000 / max(raw["content_events"], 1), 2
        ),
        "manager_vs_loop_per_event_us": round(
            (http["run_manager"]["total_ms"] - loop["total_ms"]) * 1000 / max(raw["content_events"], 1), 2
        ),
        "loop_only_per_event_us": round(
            local["scripted_run_agent"]["per_event_us"] - local["scripted_direct"]["per_event_us"], 2
        ),
        "tools_offered_first_content_delay_ms": round(
            http["answer_tools_offered"]["first_content_ms"] - http["answer_no_tools"]["first_content_ms"], 3
        ),
    }
    report = {"params": vars(args), "http": http, "inprocess": local, "overhead": summary, "run": finish(run)}
    print(json.dumps(report, indent=2))
    print()
    print(_table({**http, **local}))
    write(out, "agent_overhead", report)


if __name__ == "__main__":
    anyio.run(main)
