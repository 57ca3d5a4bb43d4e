"""Workflows: typed definitions of steps in a DAG, their checks, a safe expression language and the executor.

No HTTP and no SQL here: ``api.services.workflows`` stores definitions and results and hands the executor the
runners that reach the workspace (``engine.workflows.runtime`` says what it needs).
"""

from engine.workflows.checks import Catalog, PromptShape, VarShape
from engine.workflows.definition import Budgets, Problem, Step, StepRecord, WorkflowSpec
from engine.workflows.executor import WorkflowExecutor
from engine.workflows.runtime import (
    EmitRunner,
    EventSink,
    MemoryStepResults,
    RunContext,
    StepCall,
    StepFailed,
    StepOutcome,
    StepResultStore,
    StepRunner,
)
from engine.workflows.validation import DefinitionError, Plan, compile_workflow, resolve_uses, wanted

__all__ = [
    "Budgets", "Catalog", "DefinitionError", "EmitRunner", "EventSink", "MemoryStepResults", "Plan", "Problem",
    "PromptShape", "RunContext", "Step", "StepCall", "StepFailed", "StepOutcome", "StepRecord", "StepResultStore",
    "StepRunner", "VarShape", "WorkflowExecutor", "WorkflowSpec", "compile_workflow", "resolve_uses", "wanted",
]
