"""Workflow engine overhead per step: N prompts run as a workflow vs the same N prompts run directly.

The same scripted model (``ScriptedModelClient``: every call streams ``--words`` deltas, in process, so the
model costs the same on both sides) answers N prompts, chained (each prompt's input is the previous answer),
four ways, interleaved, ``--repeats`` times each; medians are reported:

- ``direct_loop``: N agent loops (``run_agent``) one after another, the input passed along by hand;
- ``workflow_memory``: one workflow of N prompt steps (``WorkflowExecutor``: templates, DAG scheduling,
  ``step_start``/``step_end``, the step's events restamped) with the in-memory step store, the same loop code
  the API's prompt and agent steps run (``api.services.workflows_runners.StepRunners``);
- ``direct_manager``: N background runs through ``RunManager`` with SQLite persistence, each awaited;
- ``workflow_manager``: one workflow run through ``RunManager.start_body`` with SQLite persistence and the durable
  step results (``workflow_step_results``, one commit per step, events flushed at each step's end).

Overhead per step = (workflow - direct) / N, for the bare engine and for the persisted path.
Usage: ``python benchmarks/workflow_overhead.py [--steps 20] [--words 20] [--repeats 15]``. Prints one JSON object
and a table, and writes the object to ``--out``/workflow_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
import msgspec

import engine  # noqa: F401  (offline environment first)
from api.services.identity import Principal
from api.services.runs import Prepared
from api.services.workflows_runners import SqlStepResults, StepRunners
from benchmarks._results import add_out_argument, finish, run_info, write
from engine.agent.loop import run_agent
from engine.agent.spec import AgentSpec, RunRequest
from engine.agent.trace import RunTrace
from engine.db.run_store import SqlRunStore
from engine.db.session import create_engine, migrate, session_factory
from engine.events import RunEvent
from engine.llm import Finish, TextDelta, UsageReport
from engine.ports import ToolContext
from engine.runs import RunManager, RunRecord
from engine.testing import ScriptedModelClient
from engine.workflows import (
    MemoryStepResults,
    RunContext,
    StepCall,
    StepOutcome,
    StepResultStore,
    WorkflowExecutor,
    WorkflowSpec,
    compile_workflow,
)

SPEC = AgentSpec(name="bench", model="scripted", tools=(), max_steps=1, timeout_s=60)
PRINCIPAL = Principal(user_id="usr_bench", token_id="tok_bench", workspace_id="ws_bench", role="admin", kb_ids=None)


def _model(steps: int, words: int) -> ScriptedModelClient:
    script = [*(TextDelta(f"w{i} ") for i in range(words)), UsageReport(10, words), Finish("stop")]
    return ScriptedModelClient([script] * steps)


def _request(text: str, run_id: str) -> RunRequest:
    return RunRequest(spec=SPEC, user_input=text, workspace_id=PRINCIPAL.workspace_id, kind="prompt", run_id=run_id)


def _plan(steps: int) -> Any:
    chain = [{"id": "s0", "kind": "prompt", "prompt": "p", "input": "{{ input.topic }}"}]
    chain += [{"id": f"s{i}", "kind": "prompt", "prompt": "p", "input": f"{{{{ steps.s{i - 1}.output.text }}}}"}
              for i in range(1, steps)]  # fmt: skip
    return compile_workflow(msgspec.convert({"steps": chain}, WorkflowSpec), None)


def _prompt_runner(model: ScriptedModelClient) -> Callable[[StepCall], Awaitable[StepOutcome]]:
    """The API's prompt step with the prompt already rendered: the same ``StepRunners._loop`` the API runs."""
    runners = StepRunners(None, PRINCIPAL, "env_bench", None)  # type: ignore[arg-type]

    async def run(call: StepCall) -> StepOutcome:
        prepared = Prepared(request=_request(str(call.input["input"]), call.context.run_id), model=model, tools=[])
        text, usage = await runners._loop(call, prepared)
        return StepOutcome(output={"text": text, "data": None}, usage=usage)

    return run


async def direct_loop(steps: int, words: int) -> float:
    model = _model(steps, words)
    t0 = time.perf_counter()
    text = "llamas"
    for _ in range(steps):
        trace = RunTrace()
        ctx = ToolContext(run_id="run_direct", workspace_id=PRINCIPAL.workspace_id)
        async for _event in run_agent(_request(text, "run_direct"), tools=[], model=model, run_id="run_direct",
                                      ctx=ctx, trace=trace):  # fmt: skip
            pass
        text = trace.output
    return time.perf_counter() - t0


def _executor(plan: Any, model: ScriptedModelClient, store: StepResultStore, run_id: str) -> WorkflowExecutor:
    context = RunContext(run_id=run_id, workspace_id=PRINCIPAL.workspace_id)
    return WorkflowExecutor(plan, name="bench", input={"topic": "llamas"}, context=context,
                            runners={"prompt": _prompt_runner(model)}, store=store)  # fmt: skip


async def workflow_memory(plan: Any, steps: int, words: int) -> float:
    events: list[RunEvent] = []

    async def publish(event: RunEvent) -> None:
        events.append(event)

    executor = _executor(plan, _model(steps, words), MemoryStepResults(), "run_memory")
    t0 = time.perf_counter()
    terminal = await executor.run(publish, RunTrace())
    elapsed = time.perf_counter() - t0
    assert terminal.__struct_config__.tag == "done", terminal
    return elapsed


async def direct_manager(manager: RunManager, steps: int, words: int) -> float:
    model = _model(steps, words)
    t0 = time.perf_counter()
    text = "llamas"
    for _ in range(steps):
        run_id = await manager.start(_request(text, ""), model=model)
        record = await manager.wait(run_id)
        assert record.status == "succeeded", record
        text = record.output or ""
    return time.perf_counter() - t0


async def workflow_manager(manager: RunManager, store: SqlStepResults, plan: Any, steps: int, words: int) -> float:
    from engine.ids import new_id

    run_id = new_id("run")
    record = RunRecord(id=run_id, workspace_id=PRINCIPAL.workspace_id, kind="workflow", status="running",
                       model="workflow", input='{"topic": "llamas"}', started_at=time.time())  # fmt: skip
    executor = _executor(plan, _model(steps, words), store, run_id)
    t0 = time.perf_counter()
    await manager.start_body(record, lambda publish, trace: executor.run(publish, trace), timeout_s=600)
    final = await manager.wait(run_id)
    elapsed = time.perf_counter() - t0
    assert final.status == "succeeded" and len(final.steps) == steps, final
    return elapsed


async def measure(steps: int, words: int, repeats: int) -> dict[str, float]:
    plan = _plan(steps)
    samples: dict[str, list[float]] = {"direct_loop": [], "workflow_memory": [], "direct_manager": [],
                                       "workflow_manager": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        db = create_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await migrate(db)
        sessions = session_factory(db)
        async with RunManager(SqlRunStore(sessions), keep_finished=8) as manager:
            ways: dict[str, Callable[[], Awaitable[float]]] = {
                "direct_loop": lambda: direct_loop(steps, words),
                "workflow_memory": lambda: workflow_memory(plan, steps, words),
                "direct_manager": lambda: direct_manager(manager, steps, words),
                "workflow_manager": lambda: workflow_manager(manager, SqlStepResults(sessions), plan, steps, words),
            }
            for way in ways.values():  # warm up (imports, tokenizer, SQLite pages)
                await way()
            for _ in range(repeats):
                for name, way in ways.items():
                    samples[name].append(await way())
        await db.dispose()
    return {name: round(statistics.median(s) * 1000, 3) for name, s in samples.items()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--words", type=int, default=20, help="deltas each model call streams")
    parser.add_argument("--repeats", type=int, default=15)
    add_out_argument(parser)
    args = parser.parse_args()
    out = args.out
    del args.out
    run = run_info()
    total_ms = await measure(args.steps, args.words, args.repeats)
    per_step = {name: round(ms / args.steps, 3) for name, ms in total_ms.items()}
    overhead = {
        "engine_ms_per_step": round(per_step["workflow_memory"] - per_step["direct_loop"], 3),
        "persisted_ms_per_step": round(per_step["workflow_manager"] - per_step["direct_manager"], 3),
        "durable_workflow_vs_bare_loop_ms_per_step": round(per_step["workflow_manager"] - per_step["direct_loop"], 3),
        "target_ms_per_step": 2.0,
    }
    report = {"params": vars(args), "total_ms": total_ms, "per_step_ms": per_step, "overhead": overhead,
              "run": finish(run)}  # fmt: skip
    print(json.dumps(report, indent=2))
    print()
    print(f"{'path':<18} {'total ms':>10} {'ms/step':>9}")
    for name, ms in total_ms.items():
        print(f"{name:<18} {ms:>10.3f} {per_step[name]:>9.3f}")
    print(f"\nworkflow engine overhead: {overhead['engine_ms_per_step']:.3f} ms/step (bare), "
          f"{overhead['persisted_ms_per_step']:.3f} ms/step (persisted, vs N persisted prompt runs); target < 2 ms")
    write(out, "workflow_overhead", report)


if __name__ == "__main__":
    anyio.run(main)
