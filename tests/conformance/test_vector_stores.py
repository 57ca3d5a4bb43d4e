"""One behavioural contract for every ``VectorStore`` adapter (embedded qdrant-edge, qdrant-client).

Each test runs once per adapter through the parametrised ``store`` fixture.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from engine.embedders.bm25 import Bm25SparseEncoder
from engine.errors import InvalidInput
from engine.ports import VectorStore
from engine.types import ChunkRecord, ScoredChunk, SearchFilters, SearchMode, VectorPoint, VectorQuery
from tests.conformance.corpus import DIM, WS_A, WS_B, file_ids_of, publish_corpus, reference_match

pytestmark = pytest.mark.anyio

ENCODER = Bm25SparseEncoder()
MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")


def point_with(corpus: list[VectorPoint], text_part: str, workspace: str = WS_A) -> VectorPoint:
    return next(p for p in corpus if text_part in p.chunk.text and p.chunk.workspace_id == workspace)


def query(
    mode: SearchMode,
    filters: SearchFilters,
    *,
    dense: list[float] | None = None,
    text: str = "",
    limit: int = 50,
    fusion: str = "dbsf",
) -> VectorQuery:
    return VectorQuery(
        mode=mode,
        filters=filters,
        limit=limit,
        dense=dense if mode != "sparse" else None,
        sparse=ENCODER.encode_query(text) if mode != "dense" else None,
        fusion=fusion,  # type: ignore[arg-type]
    )


def assert_ranked(hits: list[ScoredChunk]) -> None:
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)


# ---- search modes -------------------------------------------------------------------------------------------------


async def test_dense_search_ranks_the_nearest_chunk_first_and_round_trips_the_payload(
    store: VectorStore, corpus: list[VectorPoint]
) -> None:
    target = point_with(corpus, "espresso")
    hits = await store.search(query("dense", SearchFilters(workspace_id=WS_A), dense=target.dense))
    assert hits[0].chunk == target.chunk  # every ChunkRecord field survives storage, tuples included
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert_ranked(hits)
    assert len(hits) == sum(p.chunk.workspace_id == WS_A for p in corpus)


async def test_sparse_search_returns_only_chunks_sharing_a_term(store: VectorStore, corpus: list[VectorPoint]) -> None:
    hits = await store.search(query("sparse", SearchFilters(workspace_id=WS_A), text="volcanoes erupting"))
    expected = {p.chunk.id for p in corpus if p.chunk.workspace_id == WS_A and "olcano" in p.chunk.text}
    assert {hit.chunk.id for hit in hits} == expected
    assert hits[0].chunk.text.startswith("A volcano erupts")  # matches both stems "volcano" and "erupt"
    assert_ranked(hits)


async def test_sparse_search_of_stop_words_only_finds_nothing(store: VectorStore) -> None:
    assert await store.search(query("sparse", SearchFilters(workspace_id=WS_A), text="the and of")) == []


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
async def test_hybrid_puts_the_chunk_both_retrievers_agree_on_first(
    store: VectorStore, corpus: list[VectorPoint], fusion: str
) -> None:
    target = point_with(corpus, "lighthouse")
    hits = await store.search(
        query("hybrid", SearchFilters(workspace_id=WS_A), dense=target.dense, text="lighthouse keeper", fusion=fusion)
    )
    assert hits[0].chunk.id == target.chunk.id
    assert_ranked(hits)
    assert len({hit.chunk.id for hit in hits}) == len(hits)  # fused, not concatenated


async def test_hybrid_with_an_empty_sparse_query_still_returns_dense_hits(
    store: VectorStore, corpus: list[VectorPoint]
) -> None:
    target = point_with(corpus, "Glaciers")
    hits = await store.search(query("hybrid", SearchFilters(workspace_id=WS_A), dense=target.dense, text="the of"))
    assert hits[0].chunk.id == target.chunk.id


@pytest.mark.parametrize("mode", MODES)
async def test_limit_is_respected(store: VectorStore, corpus: list[VectorPoint], mode: SearchMode) -> None:
    target = point_with(corpus, "volcano")
    hits = await store.search(
        query(mode, SearchFilters(workspace_id=WS_A), dense=target.dense, text="volcano crater", limit=1)
    )
    assert len(hits) == 1
    assert hits[0].chunk.workspace_id == WS_A


async def test_hybrid_prefetches_at_least_limit_candidates(store: VectorStore, corpus: list[VectorPoint]) -> None:
    filters = SearchFilters(workspace_id=WS_A)
    request = msgspec.structs.replace(
        query("hybrid", filters, dense=corpus[0].dense, text="volcano"), limit=5, prefetch_limit=2
    )
    assert len(await store.search(request)) == 5


# ---- filters ------------------------------------------------------------------------------------------------------

FILTER_CASES = {
    "kb": SearchFilters(workspace_id=WS_A, kb_ids=("kb-1",)),
    "kbs": SearchFilters(workspace_id=WS_A, kb_ids=("kb-1", "kb-2")),
    "file": SearchFilters(workspace_id=WS_A, file_ids=("file-a-md",)),
    "files": SearchFilters(workspace_id=WS_A, file_ids=("file-a-md", "file-a-txt", "file-b-pdf")),
    "file_type": SearchFilters(workspace_id=WS_A, file_types=("pdf", "txt")),
    "tag": SearchFilters(workspace_id=WS_A, tags=("gamma",)),
    "tags_any": SearchFilters(workspace_id=WS_A, tags=("alpha", "beta")),
    "page_range": SearchFilters(workspace_id=WS_A, page_from=2, page_to=3),
    "page_from": SearchFilters(workspace_id=WS_A, page_from=4),
    "page_to": SearchFilters(workspace_id=WS_A, page_to=1),
    "created_window": SearchFilters(workspace_id=WS_A, created_after=1001.0, created_before=2002.0),
    "created_after": SearchFilters(workspace_id=WS_A, created_after=3000.0),
    "combined": SearchFilters(workspace_id=WS_A, kb_ids=("kb-1",), tags=("beta",), created_before=2001.0),
    "workspace_b": SearchFilters(workspace_id=WS_B, kb_ids=("kb-1",)),
    "metadata_value": SearchFilters(workspace_id=WS_A, metadata=(("department", ("legal",)),)),
    "metadata_any_and_int": SearchFilters(
        workspace_id=WS_A, metadata=(("department", ("legal", "ops")), ("year", (2025,)))
    ),
    "metadata_string_not_int": SearchFilters(workspace_id=WS_A, metadata=(("code", ("2025",)), ("year", (2024,)))),
    "metadata_list_contains": SearchFilters(workspace_id=WS_A, metadata=(("regions", ("us", "latam")),)),
    "metadata_and_tags": SearchFilters(workspace_id=WS_A, tags=("alpha",), metadata=(("year", (2024,)),)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(FILTER_CASES))
async def test_filters_return_exactly_the_matching_chunks(
    store: VectorStore, corpus: list[VectorPoint], case: str, mode: SearchMode
) -> None:
    filters = FILTER_CASES[case]
    expected = [p for p in corpus if reference_match(p.chunk, filters)]
    assert expected, "each case must select something"
    if mode == "sparse":  # sparse only finds chunks that share a term with the query
        text = "volcano kangaroo invoice photosynthesis espresso revenue lighthouse glacier merger"
    else:
        text = "volcano"
    hits = await store.search(query(mode, filters, dense=expected[0].dense, text=text))
    assert {hit.chunk.id for hit in hits} == {p.chunk.id for p in expected}
    assert await store.count(filters) == len(expected)


@pytest.mark.parametrize("field", ["kb_ids", "file_ids", "file_types", "tags"])
async def test_an_empty_selection_matches_nothing(store: VectorStore, corpus: list[VectorPoint], field: str) -> None:
    filters = msgspec.structs.replace(SearchFilters(workspace_id=WS_A), **{field: ()})
    assert await store.search(query("dense", filters, dense=corpus[0].dense)) == []
    assert await store.count(filters) == 0


async def test_a_metadata_key_with_no_accepted_value_matches_nothing(
    store: VectorStore, corpus: list[VectorPoint]
) -> None:
    filters = SearchFilters(workspace_id=WS_A, metadata=(("department", ()),))
    assert await store.search(query("dense", filters, dense=corpus[0].dense)) == []
    assert await store.count(filters) == 0


async def test_metadata_comes_back_with_each_hit(store: VectorStore, corpus: list[VectorPoint]) -> None:
    target = point_with(corpus, "A volcano erupts")
    hits = await store.search(query("dense", SearchFilters(workspace_id=WS_A), dense=target.dense, limit=1))
    assert hits[0].chunk.metadata == {"department": "legal", "year": 2024, "code": "2025", "regions": ["eu", "us"]}


# ---- workspace isolation ------------------------------------------------------------------------------------------

ISOLATION_FILTERS = [
    SearchFilters(workspace_id=WS_A),
    SearchFilters(workspace_id=WS_A, kb_ids=("kb-1",)),
    SearchFilters(workspace_id=WS_A, file_ids=("file-b-pdf",)),
    SearchFilters(workspace_id=WS_A, tags=("alpha", "beta"), file_types=("pdf",)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("filters", ISOLATION_FILTERS, ids=["plain", "shared-kb-id", "b-file-id", "b-tags"])
async def test_a_workspace_never_sees_another_workspaces_chunks(
    store: VectorStore, corpus: list[VectorPoint], mode: SearchMode, filters: SearchFilters
) -> None:
    secret = point_with(corpus, "Secret merger", workspace=WS_B)
    hits = await store.search(query(mode, filters, dense=secret.dense, text="secret merger volcano observatory"))
    assert all(hit.chunk.workspace_id == WS_A for hit in hits)
    assert await store.get_chunks(WS_A, "file-b-pdf", [0, 1, 2]) == []


async def test_bm25_idf_is_computed_within_the_workspace(store: VectorStore, corpus: list[VectorPoint]) -> None:
    # "volcano" is in 2 of 3 chunks of B but 2 of 9 chunks of A: rarer in A, so A must score it higher.
    scores = {}
    for workspace in (WS_A, WS_B):
        hits = await store.search(query("sparse", SearchFilters(workspace_id=workspace), text="volcano"))
        scores[workspace] = max(hit.score for hit in hits if hit.chunk.text.startswith("A volcano erupts"))
    assert scores[WS_A] > scores[WS_B]


async def _own_file_still_ingesting(store: VectorStore, own: list[VectorPoint], others: list[VectorPoint]) -> None:
    draft = msgspec.structs.replace(own[0].chunk, file_id="file-a-draft")
    await store.upsert(
        [msgspec.structs.replace(p, chunk=msgspec.structs.replace(draft, id=str(uuid.uuid4()))) for p in own]
    )


async def _other_tenant_ingesting(store: VectorStore, own: list[VectorPoint], others: list[VectorPoint]) -> None:
    await store.upsert(others)


async def _other_tenant_published(store: VectorStore, own: list[VectorPoint], others: list[VectorPoint]) -> None:
    await publish_corpus(store, others)


async def _other_tenant_deleted(store: VectorStore, own: list[VectorPoint], others: list[VectorPoint]) -> None:
    await publish_corpus(store, others)
    await store.delete_kb(WS_B, others[0].chunk.kb_id)
    await store.purge_files([p.chunk.file_id for p in others])


@pytest.mark.parametrize(
    "change", [_own_file_still_ingesting, _other_tenant_ingesting, _other_tenant_published, _other_tenant_deleted]
)
async def test_workspace_scores_depend_only_on_its_own_published_points(
    empty_store: VectorStore, corpus: list[VectorPoint], change: Any
) -> None:
    # While a workspace is alone in the store the embedded adapter drops the IDF filter (shard-wide statistics
    # are then the workspace's); no change elsewhere in the store may move A's BM25 or fused scores.
    own = [p for p in corpus if p.chunk.workspace_id == WS_A]
    others = [p for p in corpus if p.chunk.workspace_id == WS_B]
    await publish_corpus(empty_store, own)
    target = point_with(corpus, "A volcano erupts")
    requests = [
        query(mode, SearchFilters(workspace_id=WS_A), dense=target.dense, text="volcano crater pressure")
        for mode in ("sparse", "hybrid")
    ]

    async def scores() -> list[list[tuple[str, float]]]:
        return [[(h.chunk.id, round(h.score, 5)) for h in await empty_store.search(r)] for r in requests]

    alone = await scores()
    assert alone[0] and alone[1]
    await change(empty_store, own, others)
    assert await scores() == alone


@pytest.mark.parametrize("mode", MODES)
async def test_a_filter_every_point_matched_still_applies_once_other_points_arrive(
    empty_store: VectorStore, corpus: list[VectorPoint], mode: SearchMode
) -> None:
    # The embedded adapter leaves out a filter that every point in the shard matches (a knowledge base alone in
    # its collection); each kind of point that stops it matching must bring the filter back.
    own_file = "file-a-md"
    own = [p for p in corpus if p.chunk.file_id == own_file]
    await publish_corpus(empty_store, own)
    target = own[0]
    request = query(
        mode, SearchFilters(workspace_id=WS_A, file_ids=(own_file,)), dense=target.dense, text=target.chunk.text
    )
    alone = {hit.chunk.id for hit in await empty_store.search(request)}
    assert alone and alone <= {p.chunk.id for p in own}

    stranger, sibling = twin_of(target, "file-b-twin", WS_B), twin_of(target, "file-a-twin")
    await empty_store.upsert([sibling])  # not published yet
    assert {hit.chunk.id for hit in await empty_store.search(request)} == alone
    await empty_store.publish_files(WS_A, ["file-a-twin"])
    assert {hit.chunk.id for hit in await empty_store.search(request)} == alone
    await publish_corpus(empty_store, [stranger])
    assert {hit.chunk.id for hit in await empty_store.search(request)} == alone
    everything = msgspec.structs.replace(request, filters=SearchFilters(workspace_id=WS_A))
    assert sibling.chunk.id in {hit.chunk.id for hit in await empty_store.search(everything)}
    assert stranger.chunk.id not in {hit.chunk.id for hit in await empty_store.search(everything)}


@pytest.mark.parametrize("mode", MODES)
async def test_a_workspace_condition_every_point_matched_comes_back_beside_a_narrower_filter(
    empty_store: VectorStore, corpus: list[VectorPoint], mode: SearchMode
) -> None:
    # The embedded adapter leaves out each condition that every point matches: with one workspace alone and all
    # of it published, a search of one file keeps only the file condition. Another workspace's point with that
    # file id, or a pending point of the file, must bring the workspace condition back.
    own = [p for p in corpus if p.chunk.workspace_id == WS_A]
    await publish_corpus(empty_store, own)
    target = own[0]
    file_id = target.chunk.file_id
    assert len({p.chunk.file_id for p in own}) > 1  # the file condition alone does not match every point
    request = query(mode, SearchFilters(workspace_id=WS_A, file_ids=(file_id,)), dense=target.dense,
                    text=target.chunk.text)  # fmt: skip

    async def found() -> set[str]:
        return {hit.chunk.id for hit in await empty_store.search(request)}

    alone = await found()
    assert target.chunk.id in alone and alone <= {p.chunk.id for p in own if p.chunk.file_id == file_id}
    stranger = twin_of(target, file_id, WS_B)
    await publish_corpus(empty_store, [stranger])
    assert await found() == alone
    await empty_store.delete_file(WS_B, file_id)
    assert await found() == alone
    pending = twin_of(target, file_id)
    await empty_store.upsert([pending])
    assert await found() == alone
    await empty_store.publish_files(WS_A, [file_id])
    assert await found() == alone | {pending.chunk.id}


def twin_of(target: VectorPoint, file_id: str, workspace: str = WS_A) -> VectorPoint:
    """A point with ``target``'s vectors and text, in another file or workspace."""
    chunk = msgspec.structs.replace(target.chunk, id=str(uuid.uuid4()), file_id=file_id, workspace_id=workspace)
    return msgspec.structs.replace(target, chunk=chunk)


# ---- writes -------------------------------------------------------------------------------------------------------


async def test_upsert_with_the_same_ids_replaces_points(fresh_store: VectorStore, corpus: list[VectorPoint]) -> None:
    filters = SearchFilters(workspace_id=WS_A, file_ids=("file-a-md",))
    before = await fresh_store.count(filters)
    originals = [p for p in corpus if p.chunk.file_id == "file-a-md"]
    edited = [
        msgspec.structs.replace(p, chunk=msgspec.structs.replace(p.chunk, text=p.chunk.text + " (edited)"))
        for p in originals
    ]
    await fresh_store.upsert(edited)
    assert await fresh_store.count(filters) == 0  # re-upserted chunks are hidden until the file is published again
    await fresh_store.publish_files(WS_A, ["file-a-md"])
    assert await fresh_store.count(filters) == before
    chunks = await fresh_store.get_chunks(WS_A, "file-a-md", range(len(originals)))
    assert [c.text for c in chunks] == [p.chunk.text + " (edited)" for p in originals]


async def test_unpublished_points_are_invisible_until_publish_files(
    empty_store: VectorStore, corpus: list[VectorPoint]
) -> None:
    await empty_store.upsert(corpus)
    target = point_with(corpus, "espresso")
    filters = SearchFilters(workspace_id=WS_A)
    for mode in MODES:
        assert await empty_store.search(query(mode, filters, dense=target.dense, text="espresso")) == []
    assert await empty_store.count(filters) == 0
    assert await empty_store.get_chunks(WS_A, target.chunk.file_id, [0, 1]) == []
    assert await empty_store.file_ids() == {p.chunk.file_id for p in corpus}  # orphan sweeps see them

    await empty_store.publish_files(WS_A, [target.chunk.file_id])
    hits = await empty_store.search(query("dense", filters, dense=target.dense))
    assert {hit.chunk.file_id for hit in hits} == {target.chunk.file_id}


async def test_publish_files_publishes_exactly_the_files_named(
    empty_store: VectorStore, corpus: list[VectorPoint]
) -> None:
    await empty_store.upsert(corpus)
    own = sorted({p.chunk.file_id for p in corpus if p.chunk.workspace_id == WS_A})
    assert len(own) >= 3
    await empty_store.publish_files(WS_A, [])  # nothing named: nothing published
    assert await empty_store.count(SearchFilters(workspace_id=WS_A)) == 0
    await empty_store.publish_files(WS_A, own[:2])
    published = [p for p in corpus if p.chunk.file_id in own[:2]]
    assert await empty_store.count(SearchFilters(workspace_id=WS_A)) == len(published)
    assert await empty_store.get_chunks(WS_A, own[2], [0]) == []
    for file_id in own[:2]:
        assert len(await empty_store.get_chunks(WS_A, file_id, range(50))) == sum(
            p.chunk.file_id == file_id for p in corpus
        )


async def test_publish_file_is_scoped_to_the_workspace(empty_store: VectorStore, corpus: list[VectorPoint]) -> None:
    await empty_store.upsert(corpus)
    await empty_store.publish_files(WS_A, ["file-b-pdf"])  # B's file, wrong workspace: publishes nothing
    assert await empty_store.count(SearchFilters(workspace_id=WS_B)) == 0


async def test_relabel_file_replaces_tags_and_metadata_of_one_file(
    fresh_store: VectorStore, corpus: list[VectorPoint]
) -> None:
    await fresh_store.relabel_file(WS_B, "file-a-pdf", tags=["x"], metadata={})  # wrong workspace: no change
    await fresh_store.relabel_file(WS_A, "file-a-pdf", tags=["zeta"], metadata={"department": "finance"})
    old = SearchFilters(workspace_id=WS_A, metadata=(("department", ("legal",)),))
    assert await fresh_store.count(old) == 0
    relabelled = SearchFilters(workspace_id=WS_A, tags=("zeta",), metadata=(("department", ("finance",)),))
    assert await fresh_store.count(relabelled) == 4
    chunk = (await fresh_store.get_chunks(WS_A, "file-a-pdf", [0]))[0]
    assert chunk.tags == ("zeta",) and chunk.metadata == {"department": "finance"}  # removed keys are gone
    untouched = (await fresh_store.get_chunks(WS_A, "file-a-md", [0]))[0]
    assert untouched.metadata == {"department": "ops", "year": 2025, "code": "7", "regions": ["apac"]}
    other = (await fresh_store.get_chunks(WS_B, "file-b-pdf", [0]))[0]
    assert other.tags == ("alpha", "beta") and other.metadata["department"] == "legal"


async def test_relabel_reaches_chunks_that_are_not_published_yet(
    empty_store: VectorStore, corpus: list[VectorPoint]
) -> None:
    await empty_store.upsert([p for p in corpus if p.chunk.file_id == "file-a-md"])
    await empty_store.relabel_file(WS_A, "file-a-md", tags=["late"], metadata={"year": 2026})
    await empty_store.publish_files(WS_A, ["file-a-md"])
    filters = SearchFilters(workspace_id=WS_A, tags=("late",), metadata=(("year", (2026,)),))
    assert await empty_store.count(filters) == 3


async def test_delete_file_removes_one_file_of_one_workspace(
    fresh_store: VectorStore, corpus: list[VectorPoint]
) -> None:
    await fresh_store.delete_file(WS_B, "file-a-pdf")  # wrong workspace: must not delete A's file
    assert await fresh_store.count(SearchFilters(workspace_id=WS_A, file_ids=("file-a-pdf",))) == 4
    await fresh_store.delete_file(WS_A, "file-a-pdf")
    assert await fresh_store.count(SearchFilters(workspace_id=WS_A, file_ids=("file-a-pdf",))) == 0
    assert await fresh_store.file_ids() == {f for _, f in file_ids_of(corpus)} - {"file-a-pdf"}
    assert await fresh_store.count(SearchFilters(workspace_id=WS_A)) == sum(
        p.chunk.workspace_id == WS_A and p.chunk.file_id != "file-a-pdf" for p in corpus
    )


@pytest.mark.parametrize("group_by", ["chunk", "file"])
async def test_a_search_after_a_write_returns_what_the_write_left(
    fresh_store: VectorStore, corpus: list[VectorPoint], group_by: str
) -> None:
    """Chunks a search returned are not served again once a write changed them (the edge store keeps them)."""
    target = point_with(corpus, "espresso")
    search = msgspec.structs.replace(
        query("dense", SearchFilters(workspace_id=WS_A), dense=target.dense), group_by=group_by, candidates=50
    )

    async def target_hit() -> ChunkRecord | None:
        return next((h.chunk for h in await fresh_store.search(search) if h.chunk.id == target.chunk.id), None)

    first = await target_hit()
    assert first is not None and first.text == target.chunk.text and await target_hit() == first
    await fresh_store.relabel_file(WS_A, target.chunk.file_id, tags=["after"], metadata={"stage": "relabelled"})
    relabelled = await target_hit()
    assert relabelled is not None and relabelled.tags == ("after",) and relabelled.metadata == {"stage": "relabelled"}

    same_file = [p for p in corpus if p.chunk.file_id == target.chunk.file_id]
    edits = [msgspec.structs.replace(p.chunk, text=f"{p.chunk.text} v2") for p in same_file]
    await fresh_store.upsert([msgspec.structs.replace(p, chunk=e) for p, e in zip(same_file, edits, strict=True)])
    assert await target_hit() is None  # re-upserted: hidden until published again
    await fresh_store.publish_files(WS_A, [target.chunk.file_id])
    edited = await target_hit()
    assert edited is not None and edited.text == f"{target.chunk.text} v2" and edited.tags == target.chunk.tags

    await fresh_store.delete_file(WS_A, target.chunk.file_id)
    assert target.chunk.file_id not in {h.chunk.file_id for h in await fresh_store.search(search)}


async def test_purge_files_removes_orphans_in_any_workspace(
    fresh_store: VectorStore, corpus: list[VectorPoint]
) -> None:
    b_file = next(f for ws, f in file_ids_of(corpus) if ws == WS_B)
    await fresh_store.purge_files(["file-a-pdf", b_file])
    assert await fresh_store.file_ids() == {f for _, f in file_ids_of(corpus)} - {"file-a-pdf", b_file}
    await fresh_store.purge_files([])  # nothing to do, nothing deleted
    assert await fresh_store.count(SearchFilters(workspace_id=WS_A)) == sum(
        p.chunk.workspace_id == WS_A and p.chunk.file_id != "file-a-pdf" for p in corpus
    )


async def test_delete_kb_removes_one_kb_of_one_workspace(fresh_store: VectorStore, corpus: list[VectorPoint]) -> None:
    await fresh_store.delete_kb(WS_A, "kb-1")
    assert await fresh_store.count(SearchFilters(workspace_id=WS_A, kb_ids=("kb-1",))) == 0
    assert await fresh_store.count(SearchFilters(workspace_id=WS_A, kb_ids=("kb-2",))) == 2
    b_points = sum(p.chunk.workspace_id == WS_B for p in corpus)
    assert await fresh_store.count(SearchFilters(workspace_id=WS_B, kb_ids=("kb-1",))) == b_points  # same kb id in B


# ---- reads --------------------------------------------------------------------------------------------------------


async def test_get_chunks_returns_the_requested_neighbours_in_order(
    store: VectorStore, corpus: list[VectorPoint]
) -> None:
    chunks = await store.get_chunks(WS_A, "file-a-pdf", [3, 1, 99, 1, -1])
    by_ordinal = {p.chunk.ordinal: p.chunk for p in corpus if p.chunk.file_id == "file-a-pdf"}
    assert chunks == [by_ordinal[1], by_ordinal[3]]
    assert await store.get_chunks(WS_A, "file-a-pdf", []) == []


async def test_count_and_file_ids_cover_the_corpus(store: VectorStore, corpus: list[VectorPoint]) -> None:
    for workspace in (WS_A, WS_B):
        assert await store.count(SearchFilters(workspace_id=workspace)) == sum(
            p.chunk.workspace_id == workspace for p in corpus
        )
    assert await store.file_ids() == {p.chunk.file_id for p in corpus}


async def test_an_empty_store_answers_every_read(empty_store: VectorStore) -> None:
    filters = SearchFilters(workspace_id=WS_A)
    assert await empty_store.file_ids() == set()
    assert await empty_store.count(filters) == 0
    for mode in MODES:
        assert await empty_store.search(query(mode, filters, dense=[1.0] + [0.0] * (DIM - 1), text="volcano")) == []


# ---- invalid input ------------------------------------------------------------------------------------------------


async def test_invalid_input_is_rejected(empty_store: VectorStore, corpus: list[VectorPoint]) -> None:
    good = corpus[0]
    with pytest.raises(InvalidInput):
        await empty_store.upsert([msgspec.structs.replace(good, dense=[1.0, 0.0])])
    with pytest.raises(InvalidInput):
        await empty_store.upsert([msgspec.structs.replace(good, chunk=_in_workspace(good.chunk, ""))])
    with pytest.raises(InvalidInput):  # point ids are UUIDs
        await empty_store.upsert([msgspec.structs.replace(good, chunk=msgspec.structs.replace(good.chunk, id="c-1"))])
    with pytest.raises(InvalidInput):
        await empty_store.search(VectorQuery(mode="dense", filters=SearchFilters(workspace_id=WS_A), limit=5))
    with pytest.raises(InvalidInput):
        await empty_store.search(query("hybrid", SearchFilters(workspace_id=WS_A), dense=[1.0, 0.0]))
    with pytest.raises(InvalidInput):
        await empty_store.count(SearchFilters(workspace_id=""))


def _in_workspace(chunk: ChunkRecord, workspace_id: str) -> ChunkRecord:
    return msgspec.structs.replace(chunk, workspace_id=workspace_id)


async def test_a_reachable_store_answers_ping(store: VectorStore) -> None:
    await store.ping()  # raises Unavailable when it cannot answer (tests/api/test_store_outage.py)
