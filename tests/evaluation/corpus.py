"""Six short documents on unrelated topics and a golden set over them with known metrics.

Five queries have one clearly relevant document each (any sensible search ranks it first); the sixth judges a
file the knowledge base does not hold, so it scores 0 everywhere: every mode's mean nDCG@10, recall and MRR is
exactly 5/6. ``reversing`` is a deliberately bad reranker (it turns the ranking upside down).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import msgspec

from engine.settings import Settings
from engine.types import ScoredChunk

DOCS: dict[str, str] = {
    "llamas.md": "# Llamas\n\nLlamas are domesticated camelids from the Andes of South America. A llama lives "
    "fifteen to twenty-five years. Farmers keep them for their soft wool and as guard animals for sheep, and "
    "a llama carries packs of up to thirty kilograms on mountain trails.",
    "tides.md": "# Tides\n\nThe ocean rises and falls twice a day because the gravity of the moon and the sun "
    "pulls on the water of the seas. High tide and low tide follow each other about every six hours; spring "
    "tides come with the full and the new moon, neap tides with the half moon.",
    "honeybees.md": "# Honeybees\n\nA honeybee that found flowers tells the other bees of the hive where they "
    "are with the waggle dance: the angle of the dance gives the direction, its length the distance. Bees "
    "pollinate crops and turn nectar into honey.",
    "sourdough.md": "# Sourdough\n\nA sourdough starter is a mix of flour and water fermented by wild yeast and "
    "lactic bacteria. Keep it alive by feeding it fresh flour and water every day and storing it in a warm "
    "kitchen; bake the bread when the starter doubles and smells sour.",
    "chess.md": "# Chess\n\nIn chess the king may castle when neither the king nor the rook has moved, the "
    "squares between them are empty and the king is not in check and does not pass through an attacked "
    "square. Checkmate ends the game.",
    "volcanoes.md": "# Volcanoes\n\nA volcano erupts when magma from the mantle rises through the crust. Lava "
    "flows, ash clouds and pyroclastic flows follow; Mount Vesuvius erupted in the year 79 and buried the "
    "Roman towns near the Bay of Naples.",
}

GOLDEN: list[dict[str, object]] = [
    {"id": "q1", "query": "How many years does a llama live?", "files": ["llamas.md"]},
    {"id": "q2", "query": "Why does the ocean rise and fall twice a day?", "files": {"tides.md": 2}},
    {"id": "q3", "query": "How do bees tell each other where flowers are?", "files": ["honeybees.md"]},
    {"id": "q4", "query": "How do I keep a sourdough starter alive?", "files": {"sourdough.md": 1}},
    {"id": "q5", "query": "When may the king castle in chess?", "files": ["chess.md"]},
    {"id": "q6", "query": "Which guidebook describes the ruins of Pompeii?", "files": ["pompeii-guide.md"]},
]
EXPECTED = round(5 / 6, 4)  # every metric of every sensible mode


def write_docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


def golden_jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in GOLDEN))
    return path


class ReversingReranker:
    """Puts the best hit last: a deliberately worse setting that evaluation must show."""

    async def rerank(self, query: str, hits: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        n = len(hits)
        return [msgspec.structs.replace(h, score=float(i)) for i, h in enumerate(hits)][::-1] if n else []


def reversing(settings: Settings) -> ReversingReranker:
    return ReversingReranker()
