"""Ingest throughput through the real pipeline: pages/s and chunks/s on PDFs, docs/s on SciFact.

    python benchmarks/ingest.py [--pdf-pages 60] [--scifact-docs 400] [--embedder minilm]

Prints one JSON object, then a short table, and writes the object to ``--out``/ingest.json. Each case runs in a
fresh data directory, with the server's background parts (ingest worker, event log) running while the files
upload, as in a server (``upload_s`` is how long the uploads took, within ``wall_s``). ``raw_embedder`` is the
floor the pipeline is measured against: the same SciFact chunks (parsed and chunked in-process, as the worker
does) embedded by the bare model in batches of the pipeline's size, in file order, on the same number of
threads; ``pipeline_vs_raw`` is the pipeline's chunks/s over it. ``scifact_md_queued`` ingests the same files
uploaded beforehand (the clock starts with the worker): the pipeline alone, ``queued_vs_raw`` over the floor.
The SciFact cases run ``--rounds`` times with a bare-model run before and after each round, and each ratio is the
median over rounds of a run against the floor measured around it (``rounds`` in the JSON has every run); the
cases reported are the median runs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: F401
from api.container import open_services
from benchmarks._results import add_out_argument, finish, run_info, write
from engine.db.models import File
from engine.settings import Settings

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"


def scifact_docs(limit: int) -> list[tuple[str, str]]:
    docs = []
    with SCIFACT.open() as fh:
        for line in fh:
            row = json.loads(line)
            docs.append((row["_id"], f"# {row['title']}\n\n{row['text']}"))
            if len(docs) >= limit:
                break
    return docs


def pdf_from_scifact(pages: int) -> bytes:
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    story = []
    for _, text in scifact_docs(pages * 2)[: pages * 2 : 2]:
        title, _, body = text.partition("\n\n")
        story += [Paragraph(title.lstrip("# "), styles["Heading2"]), Paragraph(body, styles["BodyText"]), PageBreak()]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer).build(story)
    return buffer.getvalue()


async def run_case(
    name: str, files: list[tuple[str, bytes]], embedder_name: str, *, queued: bool = False
) -> dict[str, float]:
    """Ingest ``files`` in a fresh data directory. Streamed (default): the worker runs while they upload, as in a
    server, and the clock includes the uploads. ``queued``: all are uploaded first and the clock runs from the
    worker's start, so it measures the pipeline alone (parse, embed, store, SQL) against the bare model."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(os.environ, data_dir=Path(tmp), embedder=embedder_name)
        services = await open_services(settings)
        try:
            services.embedder.warm_up()  # type: ignore[attr-defined]
            issued = await services.access.bootstrap()
            assert issued is not None
            ws = (await services.access.authenticate(issued.secret)).workspace_id
            kb = await services.knowledge.create_kb(ws, name)
            if not queued:
                await services.start()  # as a server runs: files are ingested while later ones upload
            started = time.perf_counter()
            for filename, data in files:
                await services.knowledge.add_file(ws, kb.id, filename=filename, source=io.BytesIO(data))
            uploaded = time.perf_counter() - started
            if queued:
                await services.start()
                started = time.perf_counter()
            await services.worker.drain(timeout_s=3600)
            wall = time.perf_counter() - started
            from sqlalchemy import select

            async with services.sessions() as session:
                rows = list(await session.scalars(select(File)))
        finally:
            await services.close()
    pages = sum(r.pages_total for r in rows)
    chunks = sum(r.chunks_total for r in rows)
    parse_s = sum((r.parse_ms or 0) for r in rows) / 1000
    embed_s = sum((r.embed_ms or 0) for r in rows) / 1000
    return {
        "files": len(rows), "failed": sum(r.status == "failed" for r in rows), "pages": pages, "chunks": chunks,
        "wall_s": round(wall, 2), "files_per_s": round(len(rows) / wall, 2), "pages_per_s": round(pages / wall, 2),
        "chunks_per_s": round(chunks / wall, 2), "parse_and_chunk_s": round(parse_s, 2),
        "embed_and_store_s": round(embed_s, 2),
        "median_parse_ms_per_file": round(statistics.median(r.parse_ms or 0 for r in rows), 1),
        "upload_s": round(uploaded, 2),
    }


class RawModel:
    """The floor: the SciFact chunks the worker would embed (parsed and chunked in-process as it does), embedded
    by a bare model in batches of the pipeline's size, in file order. Chunked with the settings' chunking unless
    ``chunking`` (tokens, overlap) says otherwise; ``embedder`` shares a loaded model between instances."""

    def __init__(
        self, docs: list[tuple[str, str]], embedder_name: str, *, chunking: tuple[int, int] | None = None,
        embedder: Any = None,
    ) -> None:  # fmt: skip
        from engine.embedders import create_embedder

        settings = Settings.from_env(os.environ, embedder=embedder_name)
        if embedder is None:
            embedder = create_embedder(settings)
            embedder.warm_up()
        self.embedder = embedder
        tokens, overlap = chunking or (settings.chunk_tokens, settings.chunk_overlap)
        self.texts = embed_texts(docs, self.embedder, tokens, overlap)

    def measure(self) -> dict[str, float]:
        from ingest.worker import EMBED_BATCH

        started = time.perf_counter()
        for offset in range(0, len(self.texts), EMBED_BATCH):
            self.embedder.encode_sync(self.texts[offset : offset + EMBED_BATCH])  # type: ignore[attr-defined]
        wall = time.perf_counter() - started
        return {
            "chunks": len(self.texts), "batch": EMBED_BATCH, "wall_s": round(wall, 2),
            "chunks_per_s": round(len(self.texts) / wall, 2),
        }  # fmt: skip


def embed_texts(docs: list[tuple[str, str]], embedder: Any, chunk_tokens: int, overlap: int) -> list[str]:
    """What the worker embeds for these Markdown documents (``(id, text)``), in order: parsed and chunked as it
    does, title prefix included."""
    from ingest.chunking import chunk_document
    from ingest.loaders import parse_document

    texts: list[str] = []
    for doc_id, text in docs:
        parsed = parse_document(text.encode(), "md")
        drafts = chunk_document(parsed, chunk_tokens=chunk_tokens, overlap=overlap, title=parsed.title or doc_id,
                                window=embedder)  # fmt: skip
        texts += [d.embed_text for d in drafts]
    return texts


def bracketed_ratios(cases: list[dict[str, float]], raws: list[dict[str, float]]) -> list[float]:
    """Each round's pipeline chunks/s over the mean of the bare model's runs just before and just after it
    (``raws`` has one more entry than ``cases``): the machine's pace drifts by more than the gap being measured,
    so a floor taken minutes apart says little."""
    return [
        round(case["chunks_per_s"] / statistics.fmean([raws[n]["chunks_per_s"], raws[n + 1]["chunks_per_s"]]), 3)
        for n, case in enumerate(cases)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pdf-pages", type=int, default=60)
    parser.add_argument("--scifact-docs", type=int, default=400)
    parser.add_argument("--embedder", default=os.environ.get("RAGLINE_EMBEDDER", "minilm-onnx-int8"))
    parser.add_argument("--rounds", type=int, default=2, help="SciFact rounds, each bracketed by bare-model runs")
    add_out_argument(parser)
    parser.add_argument("--no-raw", action="store_true", help="skip the bare-embedder floor")
    args = parser.parse_args()
    run = run_info()
    pdf = pdf_from_scifact(args.pdf_pages)
    docs = scifact_docs(args.scifact_docs)
    scifact_files = [(f"{i}.md", t.encode()) for i, t in docs]
    raw = None if args.no_raw else RawModel(docs, args.embedder)
    raws, streamed, queued = [], [], []
    for _ in range(max(1, args.rounds)):  # raw, streamed, queued, raw, ...: every pipeline run has a floor beside it
        if raw is not None:
            raws.append(raw.measure())
        streamed.append(asyncio.run(run_case("scifact", scifact_files, args.embedder)))
        queued.append(asyncio.run(run_case("scifact", scifact_files, args.embedder, queued=True)))
    results: dict[str, Any] = {
        "embedder": args.embedder,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "pdf": asyncio.run(run_case("pdf", [("scifact.pdf", pdf)], args.embedder)),
        "scifact_md": median_case(streamed),
        "scifact_md_queued": median_case(queued),
        "rounds": {"scifact_md": streamed, "scifact_md_queued": queued},
        "params": {"pdf_pages": args.pdf_pages, "scifact_docs": args.scifact_docs, "rounds": len(streamed)},
    }
    if raw is not None:
        raws.append(raw.measure())
        results["raw_embedder"] = median_case(raws)
        results["rounds"]["raw_embedder"] = raws
        for key, cases in (("pipeline_vs_raw", streamed), ("queued_vs_raw", queued)):
            ratios = bracketed_ratios(cases, raws)
            results[key] = round(statistics.median(ratios), 3)
            results["rounds"][key] = ratios
    results["run"] = finish(run)
    print(json.dumps(results))
    print_table(results)
    write(args.out, "ingest", results)


def median_case(cases: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median chunks/s (the lower middle one for an even count), as measured."""
    ranked = sorted(cases, key=lambda case: case["chunks_per_s"])
    return ranked[(len(ranked) - 1) // 2]


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'case':<19}{'files':>7}{'pages':>7}{'chunks':>8}{'wall s':>9}{'pages/s':>9}{'chunks/s':>10}")
    for case in ("pdf", "scifact_md", "scifact_md_queued"):
        r = results[case]
        print(f"{case:<19}{r['files']:>7}{r['pages']:>7}{r['chunks']:>8}{r['wall_s']:>9}{r['pages_per_s']:>9}{r['chunks_per_s']:>10}")
    if "raw_embedder" in results:
        raw, rounds = results["raw_embedder"], results["rounds"]
        print(f"{'raw model':<19}{'':>7}{'':>7}{raw['chunks']:>8}{raw['wall_s']:>9}{'':>9}{raw['chunks_per_s']:>10}")
        print(f"pipeline/raw {results['pipeline_vs_raw']} (uploads streaming in; rounds {rounds['pipeline_vs_raw']}),"
              f" {results['queued_vs_raw']} (queued; rounds {rounds['queued_vs_raw']})")


if __name__ == "__main__":
    main()
