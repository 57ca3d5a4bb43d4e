"""How the evaluation service and the index switcher use each other (wired by ``api.container``): an evaluation
records the knowledge base's current index; a switch evaluates its live and its shadow collection."""

from __future__ import annotations

from typing import Any

from api.services.evaluations import Describe, EvaluationService
from engine.retrieval import Retriever
from ingest.switch import IndexSwitcher
from ingest.switch_fill import Evaluate


def index_describe(switches: IndexSwitcher, *, reranker: bool) -> Describe:
    async def describe(workspace_id: str, kb_id: str) -> dict[str, Any]:
        info = await switches.index_info(workspace_id, kb_id)
        return {
            "collection": info.collection, "embedder": info.embedder, "dim": info.dim,
            "chunk_tokens": info.chunk_tokens, "chunk_overlap": info.chunk_overlap, "reranker": reranker,
        }  # fmt: skip

    return describe


def switch_evaluator(evaluations: EvaluationService) -> Evaluate:
    async def evaluate(
        workspace_id: str, kb_id: str, golden_set_id: str, retriever: Retriever | None, switch_id: str,
        config: dict[str, Any],
    ) -> str:  # fmt: skip
        role = "shadow" if retriever is not None else "live"
        info = await evaluations.run(
            workspace_id, kb_id, golden_set_id=golden_set_id, retriever=retriever, switch_id=switch_id,
            config=config or None, label=f"index switch {switch_id}: {role} collection",
        )  # fmt: skip
        return info.id

    return evaluate
