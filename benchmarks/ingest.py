"""Ingest throughput through the real pipeline: pages/s and chunks/s on PDFs, docs/s on SciFact.

    python benchmarks/ingest.py [--pdf-pages 60] [--scifact-docs 400] [--embedder minilm]

Prints one JSON object, then a short table, and writes the object to ``--out``/ingest.json. Each case runs in a
fresh data directory.
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


async def run_case(name: str, files: list[tuple[str, bytes]], embedder_name: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(os.environ, data_dir=Path(tmp), embedder=embedder_name)
        services = await open_services(settings)
        try:
            services.embedder.warm_up()  # type: ignore[attr-defined]
            issued = await services.access.bootstrap()
            assert issued is not None
            ws = (await services.access.authenticate(issued.secret)).workspace_id
            kb = await services.knowledge.create_kb(ws, name)
            started = time.perf_counter()
            for filename, data in files:
                await services.knowledge.add_file(ws, kb.id, filename=filename, source=io.BytesIO(data))
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
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pdf-pages", type=int, default=60)
    parser.add_argument("--scifact-docs", type=int, default=400)
    parser.add_argument("--embedder", default=os.environ.get("RAGLINE_EMBEDDER", "minilm-onnx-int8"))
    add_out_argument(parser)
    args = parser.parse_args()
    run = run_info()
    pdf = pdf_from_scifact(args.pdf_pages)
    results = {
        "embedder": args.embedder,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "pdf": asyncio.run(run_case("pdf", [("scifact.pdf", pdf)], args.embedder)),
        "scifact_md": asyncio.run(run_case(
            "scifact", [(f"{i}.md", t.encode()) for i, t in scifact_docs(args.scifact_docs)], args.embedder)),
        "params": {"pdf_pages": args.pdf_pages, "scifact_docs": args.scifact_docs},
    }
    results["run"] = finish(run)
    print(json.dumps(results))
    print(f"\n{'case':<12}{'files':>7}{'pages':>7}{'chunks':>8}{'wall s':>9}{'pages/s':>9}{'chunks/s':>10}")
    for case in ("pdf", "scifact_md"):
        r = results[case]
        print(f"{case:<12}{r['files']:>7}{r['pages']:>7}{r['chunks']:>8}{r['wall_s']:>9}{r['pages_per_s']:>9}{r['chunks_per_s']:>10}")
    write(args.out, "ingest", results)


if __name__ == "__main__":
    main()
