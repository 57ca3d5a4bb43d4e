"""The conformance suite's corpus: a few files in two workspaces, and a reference filter implementation.

Dense vectors are seeded random unit vectors (8-d), sparse vectors come from the real BM25 encoder.
The expected result of every filter is computed here in plain Python (``reference_match``), independently
of the adapters' translation code, and compared with what each store returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from engine.embedders.bm25 import Bm25SparseEncoder
from engine.ports import VectorStore
from engine.types import ChunkRecord, MetadataValue, SearchFilters, VectorPoint

DIM = 8
WS_A = "ws-a"
WS_B = "ws-b"

# (workspace, kb, file_id, file_type, tags, created_at, pages-or-None, texts)
FILES: list[tuple[str, str, str, str, tuple[str, ...], float, bool, list[str]]] = [
    (
        WS_A,
        "kb-1",
        "file-a-pdf",
        "pdf",
        ("alpha",),
        1000.0,
        True,
        [
            "Kangaroos carry their young in a pouch and hop across the Australian outback.",
            "A volcano erupts when magma pressure breaks through the crust of the earth.",
            "The invoice total includes shipping, handling and a regional sales tax.",
            "Glaciers carve valleys slowly as compacted snow flows downhill over centuries.",
        ],
    ),
    (
        WS_A,
        "kb-1",
        "file-a-md",
        "md",
        ("beta", "gamma"),
        2000.0,
        False,
        [
            "Photosynthesis converts sunlight, water and carbon dioxide into glucose.",
            "The espresso machine needs descaling every two months to keep pressure stable.",
            "Volcano monitoring uses seismometers and gas sensors near the crater.",
        ],
    ),
    (
        WS_A,
        "kb-2",
        "file-a-txt",
        "txt",
        (),
        3000.0,
        False,
        [
            "Quarterly revenue grew while operating costs stayed flat.",
            "The lighthouse keeper logged every passing ship in a leather notebook.",
        ],
    ),
    # Workspace B reuses a kb id and near-identical texts: isolation must come from the workspace alone.
    (
        WS_B,
        "kb-1",
        "file-b-pdf",
        "pdf",
        ("alpha", "beta"),
        1500.0,
        True,
        [
            "Kangaroos carry their young in a pouch and hop across the Australian outback.",
            "A volcano erupts when magma pressure breaks through the crust of the earth.",
            "Secret merger plans for the volcano observatory company.",
        ],
    ),
]


# User metadata per file (file-a-txt has none): strings, integers and lists of strings.
FILE_METADATA: dict[str, dict[str, MetadataValue]] = {
    "file-a-pdf": {"department": "legal", "year": 2024, "code": "2025", "regions": ["eu", "us"]},
    "file-a-md": {"department": "ops", "year": 2025, "code": "7", "regions": ["apac"]},
    "file-b-pdf": {"department": "legal", "year": 2024},
}


def chunk_id(file_id: str, ordinal: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragline-test/{file_id}/{ordinal}"))


def build_corpus() -> list[VectorPoint]:
    """Every chunk of ``FILES`` with seeded unit dense vectors and real BM25 sparse vectors."""
    import numpy as np  # after ``engine`` (imported above), which sets the BLAS thread count

    rng = np.random.default_rng(7)
    encoder = Bm25SparseEncoder()
    points: list[VectorPoint] = []
    for workspace, kb, file_id, file_type, tags, created_at, paged, texts in FILES:
        sparse = encoder.encode_documents(texts)
        for ordinal, text in enumerate(texts):
            dense = rng.normal(size=DIM)
            chunk = ChunkRecord(
                id=chunk_id(file_id, ordinal),
                workspace_id=workspace,
                kb_id=kb,
                file_id=file_id,
                file_name=f"{file_id}.{file_type}",
                file_type=file_type,
                ordinal=ordinal,
                text=text,
                page=ordinal + 1 if paged else None,
                heading_path=("Doc", f"Section {ordinal}"),
                char_start=ordinal * 100,
                char_end=ordinal * 100 + len(text),
                tags=tags,
                created_at=created_at + ordinal,
                metadata=FILE_METADATA.get(file_id, {}),
            )
            points.append(
                VectorPoint(chunk=chunk, dense=(dense / np.linalg.norm(dense)).tolist(), sparse=sparse[ordinal])
            )
    return points


def reference_match(chunk: ChunkRecord, filters: SearchFilters) -> bool:
    """What ``filters`` means, written independently of the adapters."""
    checks = [
        chunk.workspace_id == filters.workspace_id,
        filters.kb_ids is None or chunk.kb_id in filters.kb_ids,
        filters.file_ids is None or chunk.file_id in filters.file_ids,
        filters.file_types is None or chunk.file_type in filters.file_types,
        filters.tags is None or bool(set(chunk.tags) & set(filters.tags)),
    ]
    for key, accepted in filters.metadata or ():
        value = chunk.metadata.get(key)
        held = value if isinstance(value, list) else [] if value is None else [value]
        # exact type and value: the string "2025" is not the integer 2025
        checks.append(any(type(v) is type(a) and v == a for v in held for a in accepted))
    if filters.page_from is not None or filters.page_to is not None:
        low = filters.page_from if filters.page_from is not None else -(10**9)
        high = filters.page_to if filters.page_to is not None else 10**9
        checks.append(chunk.page is not None and low <= chunk.page <= high)
    if filters.created_after is not None:
        checks.append(chunk.created_at >= filters.created_after)
    if filters.created_before is not None:
        checks.append(chunk.created_at < filters.created_before)
    return all(checks)


def file_ids_of(points: Iterable[VectorPoint]) -> set[tuple[str, str]]:
    return {(p.chunk.workspace_id, p.chunk.file_id) for p in points}


async def publish_corpus(store: VectorStore, corpus: list[VectorPoint]) -> None:
    """Upsert every point, then publish file by file (as ingest does)."""
    await store.upsert(corpus)
    for workspace, file_id in sorted(file_ids_of(corpus)):
        await store.publish_files(workspace, [file_id])
