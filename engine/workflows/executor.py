"""The DAG executor: runs a compiled workflow, branches side by side, and publishes typed run events.

``run`` publishes ``execution`` (or, resuming, a ``thinking`` line saying what was already done), then for each
step ``step_start``, the step's own events and ``step_end``, and returns the terminal ``done``/``error`` (the run
manager publishes it once the run is stored). Steps whose dependencies are done start at once in one anyio task
group, so independent branches run concurrently. It is a coroutine with a publish callback, not an async
generator, because a task group must not stay open across a ``yield``.

A step is skipped when the condition gating it took the other branch, or when every step it depends on was
skipped. Each finished step is saved to the ``StepResultStore`` before its ``step_end`` goes out; a run that
resumes after a restart loads them and runs only what is left. Budgets: steps run (``max_steps``), tokens over
every model call (``max_tokens``) and wall time (``timeout_s``; a resumed run has what its finished steps left).
Cancel is the caller's: cancelling the task that awaits ``run`` stops every step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
import jsonschema
import msgspec
from anyio.abc import TaskGroup

from engine.agent.trace import RunTrace
from engine.events import DoneEvent, ErrorEvent, ExecutionEvent, RunEvent, StepEndEvent, StepStartEvent, ThinkingEvent
from engine.types import TokenUsage
from engine.workflows.definition import ConditionStep, StepRecord
from engine.workflows.expressions import ExpressionError, evaluate, paths
from engine.workflows.runtime import Publish, RunContext, StepCall, StepFailed, StepOutcome, StepResultStore, StepRunner
from engine.workflows.templates import render
from engine.workflows.validation import CompiledStep, Plan

log = logging.getLogger(__name__)

MAX_STREAMED_BYTES = 8192  # a step's input or output in its events; the run record keeps them whole
_BASE_FIELDS = frozenset({"id", "name", "after", "uses", "on_error", "timeout_s", "kind"})
_encoder = msgspec.json.Encoder()


def bounded(value: Any) -> Any:
    """``value`` when it is small enough to stream in an event, else ``None``."""
    return value if len(_encoder.encode(value)) <= MAX_STREAMED_BYTES else None


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else _encoder.encode(value).decode()


def summarize(kind: str, output: Any) -> str:
    """A short line about a step's output for its ``step_end``."""
    if isinstance(output, dict):
        if kind == "search" and isinstance(output.get("count"), int):
            return f"{output['count']} hit{'s' if output['count'] != 1 else ''}"
        if kind == "condition":
            return "true" if output.get("value") else "false"
        if kind == "emit":
            return f"emitted {output.get('event')} ({output.get('event_id')})"
        if isinstance(output.get("text"), str):
            return _short(output["text"])
    return _short(as_text(output))


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class WorkflowExecutor:
    """One run of a plan. ``runners`` maps step kinds to runners (``condition`` and ``transform`` are built in)."""

    def __init__(
        self, plan: Plan, *, name: str, input: Mapping[str, Any], context: RunContext,
        runners: Mapping[str, StepRunner], store: StepResultStore,
    ) -> None:  # fmt: skip
        self.plan, self.name, self.context, self.runners, self.store = plan, name, context, runners, store
        self.budgets = plan.spec.budgets
        self.scope: dict[str, Any] = {"input": dict(input), "steps": {}}
        self.records: dict[str, StepRecord] = {}
        self.started: set[str] = set()
        self.steps_run = 0
        self.usage = TokenUsage()
        self.failure: tuple[str, str] | None = None
        self.seq = 0
        self.deadline = 0.0
        self._tg: TaskGroup | None = None
        self._publish: Publish | None = None
        self._trace = RunTrace()

    # -- the run ---------------------------------------------------------------------------------------------------

    async def run(self, publish: Publish, trace: RunTrace, *, start_seq: int = 0) -> RunEvent:
        """Run what is left of the workflow; returns the terminal event (not published)."""
        self._publish, self._trace, self.seq = publish, trace, start_seq
        earlier = sorted(await self.store.load(self.context.run_id), key=lambda r: r.finished_at)
        for record in earlier:
            compiled = self.plan.steps.get(record.step_id)
            if compiled is None:
                continue
            self._remember(record)
            self.started.add(record.step_id)
            self.steps_run += record.status != "skipped"
            if record.status == "failed" and compiled.step.on_error == "fail":  # it failed just before a restart
                self._fail("step_failed", f"step {record.step_id!r} ({record.kind}) failed: {record.error}")
        if start_seq == 0:
            await self._emit(ExecutionEvent(run_id="", seq=0, ts=0, execution_id=self.context.run_id,
                                            agent=self.name, model="workflow"))  # fmt: skip
        else:
            done = ", ".join(self.records) or "none"
            await self._emit(ThinkingEvent(run_id="", seq=0, ts=0, content=f"Resumed after a restart; steps "
                                           f"already done: {done}."))  # fmt: skip
        spent = sum(r.duration_ms for r in earlier) / 1000
        timeout = max(0.0, self.budgets.timeout_s - spent)
        self.deadline = time.monotonic() + timeout
        with anyio.move_on_after(timeout) as clock:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._advance()
        if clock.cancelled_caught and self.failure is None:
            self.failure = ("timeout", f"the workflow exceeded its {self.budgets.timeout_s:g} s time limit")
        return await self._terminal()

    async def _terminal(self) -> RunEvent:
        if self.failure is None and len(self.records) < len(self.plan.steps):
            self.failure = ("internal", "the workflow stopped before every step ran")
        if self.failure is not None:
            return self._stamp(ErrorEvent(run_id="", seq=0, ts=0, code=self.failure[0], message=self.failure[1]))
        try:
            output = self._output()
        except ExpressionError as exc:
            return self._stamp(ErrorEvent(run_id="", seq=0, ts=0, code="invalid_output",
                                          message=f"the output could not be made: {exc.message}"))  # fmt: skip
        schema = self.plan.spec.output_schema
        if schema is not None:
            errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(output)][:10]
            if errors:
                return self._stamp(ErrorEvent(run_id="", seq=0, ts=0, code="invalid_output",
                                              message="the output does not match output_schema: " + "; ".join(errors)))
        self._trace.output = as_text(output)
        elapsed = sum(r.duration_ms for r in self.records.values()) / 1000
        return self._stamp(DoneEvent(run_id="", seq=0, ts=0, output=self._trace.output, token_usage=self.usage,
                                     time=round(elapsed, 6)))  # fmt: skip

    def _output(self) -> Any:
        if self.plan.output is not None:
            return render(self.plan.output, self.scope)
        outputs = {sid: self.scope["steps"][sid]["output"] for sid in self.plan.sinks}
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    # -- scheduling ------------------------------------------------------------------------------------------------

    async def _advance(self) -> None:
        """Start every step whose dependencies are done (skips are decided and recorded here)."""
        while self.failure is None:
            ready = [sid for sid, c in self.plan.steps.items()
                     if sid not in self.started and all(d in self.records for d in c.deps)]  # fmt: skip
            if not ready:
                return
            self.started.update(ready)
            for sid in ready:
                compiled = self.plan.steps[sid]
                reason = self._skip_reason(compiled)
                if reason is not None:
                    await self._finish(compiled, StepRecord(step_id=sid, kind=compiled.step.kind, status="skipped",
                                                            summary=reason, started_at=time.time(),
                                                            finished_at=time.time()))  # fmt: skip
                elif self.steps_run >= self.budgets.max_steps:
                    self._fail("max_steps", f"the workflow may run {self.budgets.max_steps} steps: {sid!r} would "
                                            "be one more")  # fmt: skip
                    return
                else:
                    self.steps_run += 1
                    assert self._tg is not None
                    self._tg.start_soon(self._run_step, compiled, name=f"step {sid}")

    def _skip_reason(self, compiled: CompiledStep) -> str | None:
        if compiled.gate is not None:
            condition, branch = compiled.gate
            record = self.records[condition]
            taken = record.status == "succeeded" and bool((record.output or {}).get("value"))
            if record.status != "succeeded" or taken != branch:
                return f"skipped: condition {condition!r} was {'true' if taken else 'false'}"
        if compiled.deps and all(self.records[d].status == "skipped" for d in compiled.deps):
            return "skipped: every step it depends on was skipped"
        return None

    def _fail(self, code: str, message: str) -> None:
        if self.failure is None:
            self.failure = (code, message)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # -- one step --------------------------------------------------------------------------------------------------

    async def _run_step(self, compiled: CompiledStep) -> None:
        step = compiled.step
        record = StepRecord(step_id=step.id, kind=step.kind, status="failed", started_at=time.time())
        t0 = time.perf_counter()
        try:
            try:
                record.input = self._input(compiled)
            except ExpressionError as exc:
                raise StepFailed(f"its input could not be made: {exc.message}") from None
            await self._emit(StepStartEvent(run_id="", seq=0, ts=0, step_id=step.id, kind=step.kind,
                                            input=bounded(record.input)))  # fmt: skip
            timeout = step.timeout_s if step.timeout_s is not None else float("inf")
            with anyio.fail_after(timeout):
                outcome = await self._call(compiled, record.input)
            record.status, record.output, record.usage = "succeeded", outcome.output, outcome.usage
            record.summary = outcome.summary or summarize(step.kind, outcome.output)
        except (StepFailed, ExpressionError) as exc:
            record.error = exc.message
        except TimeoutError:
            record.error = f"the step exceeded its {step.timeout_s:g} s time limit"
        except Exception as exc:
            log.warning("workflow step %s of run %s failed", step.id, self.context.run_id, exc_info=True)
            record.error = f"{type(exc).__name__}: {exc}"[:500]
        record.finished_at = time.time()
        record.duration_ms = round((time.perf_counter() - t0) * 1000, 3)
        if record.error is not None:
            record.summary = f"failed: {_short(record.error)}"
        try:
            await self._finish(compiled, record)
        except Exception:
            log.exception("could not record step %s of run %s", step.id, self.context.run_id)
            self._fail("internal", f"step {step.id!r} could not be recorded")
            return
        if record.status == "failed" and step.on_error == "fail":
            self._fail("step_failed", f"step {step.id!r} ({step.kind}) failed: {record.error}")
        elif self.budgets.max_tokens is not None and self.usage.total > self.budgets.max_tokens:
            self._fail("max_tokens", f"the workflow used {self.usage.total} tokens, over its budget of "
                                     f"{self.budgets.max_tokens}")  # fmt: skip
        else:
            await self._advance()

    def _input(self, compiled: CompiledStep) -> dict[str, Any]:
        step = compiled.step
        values = {k: v for k, v in msgspec.structs.asdict(step).items() if k not in _BASE_FIELDS}
        if isinstance(step, ConditionStep):
            assert compiled.expression is not None
            shown = {p.text: evaluate(p, self.scope) for p in paths(compiled.expression)}
            return {"expression": step.expression, "values": shown}
        for name, template in compiled.templates.items():
            value = render(template, self.scope)
            if "." in name:
                field, key = name.split(".", 1)
                values.setdefault(field, {})[key] = value
            else:
                values[name] = value
        return values

    async def _call(self, compiled: CompiledStep, values: dict[str, Any]) -> StepOutcome:
        step = compiled.step
        if isinstance(step, ConditionStep):
            assert compiled.expression is not None
            return StepOutcome(output={"value": bool(evaluate(compiled.expression, self.scope))})
        if step.kind == "transform":
            return StepOutcome(output=values.get("template"))
        runner = self.runners.get(step.kind)
        if runner is None:
            raise StepFailed(f"{step.kind} steps cannot run on this server")
        left = None if self.budgets.max_tokens is None else max(0, self.budgets.max_tokens - self.usage.total)
        call = StepCall(step=step, input=values, context=self.context, tokens_left=left,
                        time_left_s=max(0.0, self.deadline - time.monotonic()), emit=self._emit)  # fmt: skip
        return await runner(call)

    async def _finish(self, compiled: CompiledStep, record: StepRecord) -> None:
        """Store the step's record (durable before its end is announced), then publish ``step_end``."""
        with anyio.CancelScope(shield=True):  # a sibling's failure must not tear a finished step's record
            await self.store.save(self.context.run_id, record)
        self._remember(record)
        await self._emit(StepEndEvent(
            run_id="", seq=0, ts=0, step_id=record.step_id, kind=record.kind, status=record.status,
            duration_ms=record.duration_ms, summary=record.summary, output=bounded(record.output), error=record.error,
        ))  # fmt: skip

    def _remember(self, record: StepRecord) -> None:
        self.records[record.step_id] = record
        self.scope["steps"][record.step_id] = {"output": record.output, "status": record.status, "error": record.error}
        self.usage = self.usage + record.usage
        self._trace.steps.append(msgspec.to_builtins(record))
        self._trace.usage = self.usage

    # -- events ----------------------------------------------------------------------------------------------------

    def _stamp(self, event: RunEvent) -> RunEvent:
        self.seq += 1
        return msgspec.structs.replace(event, run_id=self.context.run_id, seq=self.seq, ts=time.time())

    async def _emit(self, event: RunEvent) -> None:
        assert self._publish is not None
        await self._publish(self._stamp(event))
