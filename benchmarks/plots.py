"""Figures for the README from the benchmarks' JSON results (matplotlib, Agg backend, no network).

    python benchmarks/plots.py [--results benchmarks/results] [--out benchmarks/results]

Reads what the benchmark scripts wrote with ``--out`` and draws one PNG per result that is there:

- ``quality.png``: nDCG@10 and recall@100 per retrieval mode on SciFact test (``retrieval_quality.json``) next
  to the peers' figures (``peers.json``, copied from shared/bench/peers/README.md);
- ``latency.png``: store query latency p50 / p99 by corpus size (``retrieval_latency.json``);
- ``ingest.png``: ingest throughput, chunks/s and documents/s (``ingest.json``);
- ``search_under_ingest.png``: HTTP search latency idle vs while files ingest (``search_under_ingest.json``).

Every plotted number comes from one of those files; each figure's subtitle names the file, the run's date,
the machine and its load average (other jobs share the development machine). Needs the ``bench`` extra:
``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

RESULTS = Path(__file__).resolve().parent / "results"
RAGLINE = "#1f5fa8"
PEER = "#9a9a9a"
FLOOR = "#c9c9c9"
MODE_COLOURS = {"dense": "#1f5fa8", "sparse": "#e07b00", "hybrid": "#2c9c4a"}
DPI = 100

plt.rcParams.update({
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "figure.titlesize": 12,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.dpi": DPI,
})  # fmt: skip


def load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def machine(report: dict[str, Any], source: str) -> str:
    """``source, date, N x CPU, load avg a -> b`` from the ``run`` entry the scripts write."""
    run = report.get("run")
    if not run:
        return f"{source} (no run details recorded)"
    cpu = run.get("cpu", "?").replace("(R)", "").replace("(TM)", "").replace(" CPU", "")
    start, end = run.get("load_avg_start", ["?"])[0], run.get("load_avg_end", ["?"])[0]
    cores = f"{run.get('cpus', '?')} cores ({cpu})"
    return f"{source}, {run['started'][:10]}; {cores}; 1-min load avg {start} before, {end} after (this run included)"


def titled(fig: Figure, title: str, subtitle: str) -> None:
    """Title and subtitle (explicit line breaks, 8 pt) at a fixed distance from the top, then lay out the axes."""
    height = fig.get_figheight()
    fig.suptitle(title, x=0.01, y=1 - 0.1 / height, ha="left", va="top", fontweight="bold")
    fig.text(0.01, 1 - 0.4 / height, subtitle, ha="left", va="top", fontsize=8, color="#444444")
    lines = subtitle.count("\n") + 1
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.3 + 0.14 * lines) / height))


def save(fig: Figure, out: Path, name: str) -> Path:
    path = out / name
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return path


def label_bars(ax: Axes, bars: Any, fmt: str, inside: bool = False) -> None:
    """Each horizontal bar's value at its end: outside in black, or inside in white (clear of lines drawn across)."""
    pad = 0.008 * ax.get_xlim()[1]
    for bar in bars:
        width = bar.get_width()
        y = bar.get_y() + bar.get_height() / 2
        if inside:
            ax.text(width - pad, y, format(width, fmt), va="center", ha="right", fontsize=8, color="white")
        else:
            ax.text(width + pad, y, format(width, fmt), va="center", fontsize=8)


# -- (a) retrieval quality ---------------------------------------------------------------------------------------

RAGLINE_MODES = [  # key in retrieval_quality.json -> label, top to bottom
    ("hybrid_dbsf", "Ragline hybrid DBSF (default)"),
    ("hybrid_rrf", "Ragline hybrid RRF"),
    ("sparse", "Ragline sparse (BM25)"),
    ("dense", "Ragline dense"),
]


def plot_quality(quality: dict[str, Any], peers: dict[str, Any] | None, out: Path) -> Path:
    rows: list[tuple[str, float, float, str]] = []  # label, nDCG@10, recall@100, colour
    for key, label in RAGLINE_MODES:
        if key in quality["results"]:
            r = quality["results"][key]
            rows.append((label, r["ndcg@10"], r["recall@100"], RAGLINE))
    for p in (peers or {}).get("peers", []):
        colour = FLOOR if p["peer"] == "floor" else PEER
        name = "floor: encode + numpy" if p["peer"] == "floor" else p["peer"]
        rows.append((f"{name} {p['mode']}", p["ndcg@10"], p["recall@100"], colour))
    rows.reverse()  # barh draws bottom-up

    fig, axes = plt.subplots(1, 2, figsize=(9, 0.32 * len(rows) + 1.9), sharey=True)
    labels = [r[0] for r in rows]
    colours = [r[3] for r in rows]
    for ax, column, name in ((axes[0], 1, "nDCG@10"), (axes[1], 2, "recall@100")):
        ax.set_xlim(0, 1.0)
        bars = ax.barh(labels, [r[column] for r in rows], color=colours, height=0.7)
        label_bars(ax, bars, "g", inside=True)  # the figures as recorded (4 decimals at most)
        ax.set_xlabel(f"{name} (0 to 1, higher is better)")
        ax.grid(axis="x", color="#e5e5e5")
        ax.set_axisbelow(True)
    axes[0].axvline(0.75, color="#b03030", linestyle=":", linewidth=1)
    axes[0].text(0.75, len(rows) - 0.4, " issue's target 0.75", color="#b03030", fontsize=8, va="bottom")
    ours = sum(1 for row in rows if row[3] == RAGLINE)
    if ours < len(rows):
        for ax in axes:  # a rule between Ragline's bars (top) and the peers'
            ax.axhline(len(rows) - ours - 0.5, color="#555555", linewidth=0.6)
    axes[0].set_title("nDCG@10", loc="left")
    axes[1].set_title("recall@100", loc="left")

    partial = "" if quality.get("complete", True) else f", PARTIAL corpus ({quality['documents_ingested']} documents)"
    queries = next(iter(quality["results"].values()))["queries"]
    subtitle = "\n".join((
        f"Ragline (blue): {machine(quality, 'retrieval_quality.json')}",
        f"{queries} queries, {quality['chunks']:,} chunks of {quality['chunk_tokens']}/{quality['chunk_overlap']} "
        f"tokens, {quality.get('embedder', 'MiniLM')}; a document ranks by its best chunk{partial}.",
        f"Peers (grey): copied from {_peer_source(peers)} (same model, all-MiniLM-L6-v2; not rerun here). "
        "Quality does not depend on the machine.",
    ))
    titled(fig, f"Retrieval quality on BEIR SciFact {quality['split']} ({quality['documents']:,} documents)", subtitle)
    return save(fig, out, "quality.png")


def _peer_source(peers: dict[str, Any] | None) -> str:
    if not peers:
        return "nowhere (no peers.json)"
    return str(peers["source"]).split(",")[0]


# -- (b) store latency by corpus size ----------------------------------------------------------------------------


def _case(search_ms: dict[str, Any], mode: str, filter_name: str) -> dict[str, float] | None:
    """The default configuration: idf=workspace (alone in the shard) when it was timed, else the first scope."""
    if mode == "dense":
        return search_ms.get(f"dense/{filter_name}")
    keys = [k for k in search_ms if k.startswith(f"{mode}/") and k.endswith(f"/{filter_name}") and "+" not in k]
    keys.sort(key=lambda k: "idf=workspace/" not in k)
    return search_ms[keys[0]] if keys else None


def plot_latency(latency: dict[str, Any], out: Path) -> Path:
    sizes = [run["points"] for run in latency["sizes"]]
    names = [f"{s // 1000:,}k" if s >= 1000 else str(s) for s in sizes]
    fig, (ax, tab) = plt.subplots(2, 1, figsize=(8, 6.4), gridspec_kw={"height_ratios": [4, 1]})
    cells: list[list[str]] = [[] for _ in sizes]
    columns: list[str] = []
    for mode, colour in MODE_COLOURS.items():
        stats = [_case(run["search_ms"], mode, "workspace_only") for run in latency["sizes"]]
        xs = [size for size, s in zip(sizes, stats, strict=True) if s]
        for pct, style, marker in (("p50", "-", "o"), ("p99", "--", "^")):
            ys = [s[pct] for s in stats if s]
            ax.plot(xs, ys, linestyle=style, marker=marker, color=colour, label=f"{mode} {pct}")
            columns.append(f"{mode} {pct}")
            for row, s in zip(cells, stats, strict=True):
                row.append(f"{s[pct]:.3g}" if s else "-")
    encode = latency.get("query_encoding_ms", {}).get("dense_minilm_sync")
    if encode:
        embedder = latency["query_encoding_ms"].get("embedder", "")
        ax.axhline(encode["p50"], color="#666666", linestyle=":", linewidth=1,
                   label=f"query embedding p50, {embedder}, 1 thread: {encode['p50']:.3g} ms (added to every query)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, names)
    ax.minorticks_off()
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.set_xlim(sizes[0] / 1.6, sizes[-1] * 1.6)
    ax.set_xlabel("chunks in the shard (log scale)")
    ax.set_ylabel("search latency, ms (log scale)")
    ax.grid(True, which="major", color="#e5e5e5")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 8)  # room for the legend
    handles, labels = ax.get_legend_handles_labels()
    lines = ax.legend(handles[:6], labels[:6], ncol=3, fontsize=8, loc="upper left", frameon=False)
    if encode:  # the embedding line gets its own legend below the first
        ax.add_artist(lines)
        ax.legend(handles[6:], labels[6:], fontsize=8, loc="upper left", frameon=False, bbox_to_anchor=(0, 0.87))
    tab.axis("off")
    table = tab.table(cellText=cells, rowLabels=[f"{n} chunks" for n in names], colLabels=[f"{c} ms" for c in columns],
                      loc="center", cellLoc="center")  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    subtitle = "\n".join((
        machine(latency, "retrieval_latency.json"),
        f"Embedded qdrant-edge, exact scan, synthetic 384-d vectors, limit {latency['limit']}, "
        f"{latency['queries_per_case']} queries per point, workspace filter only,",
        "BM25 IDF per workspace (alone in the shard); the store call only, query embedding not included.",
    ))
    titled(fig, "Vector store search latency by corpus size (lower is better)", subtitle)
    return save(fig, out, "latency.png")


# -- (c) ingest throughput ---------------------------------------------------------------------------------------


def plot_ingest(ingest: dict[str, Any], out: Path) -> Path:
    pdf, md = ingest["pdf"], ingest["scifact_md"]
    cases = [
        (f"PDF, {pdf['pages']} pages\n({pdf['chunks']} chunks, 1 file)", pdf),
        (f"SciFact abstracts\n({md['files']} Markdown files, {md['chunks']} chunks)", md),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    chunks = axes[0].barh([c[0] for c in cases], [c[1]["chunks_per_s"] for c in cases], color=RAGLINE, height=0.55)
    axes[0].set_xlim(0, max(c[1]["chunks_per_s"] for c in cases) * 1.25)
    label_bars(axes[0], chunks, ".1f")
    axes[0].set_xlabel("chunks per second (higher is better)")
    axes[0].set_title("chunks/s", loc="left")
    docs = [("PDF pages/s", pdf["pages_per_s"]), ("SciFact documents/s", md["files_per_s"])]
    bars = axes[1].barh([d[0] for d in docs], [d[1] for d in docs], color=["#7fa7d6", RAGLINE], height=0.55)
    axes[1].set_xlim(0, max(d[1] for d in docs) * 1.25)
    label_bars(axes[1], bars, ".2f")
    axes[1].set_xlabel("per second (higher is better)")
    axes[1].set_title("documents/s", loc="left")
    for ax in axes:
        ax.grid(axis="x", color="#e5e5e5")
        ax.set_axisbelow(True)
    shares = "; ".join(
        f"{name}: {c['wall_s']:.1f} s wall, embed+store {c['embed_and_store_s']:.1f} s, parse+chunk "
        f"{c['parse_and_chunk_s']:.1f} s" for name, c in (("PDF", pdf), ("SciFact", md))
    )
    subtitle = "\n".join((
        machine(ingest, "ingest.json"),
        f"The whole pipeline (upload, sandboxed parse, 200-token chunks, {ingest['embedder']} + BM25, publish), "
        "each case in a fresh data directory.",
        f"{shares} (stage times summed over files).",
    ))
    titled(fig, "Ingest throughput", subtitle)
    return save(fig, out, "ingest.png")


# -- (d) search while files ingest -------------------------------------------------------------------------------


def plot_under_ingest(report: dict[str, Any], out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    phases = (("idle", report["idle"], "#7fa7d6"), ("while ingesting", report["ingest"], RAGLINE))
    width = 0.38
    for i, (name, r, colour) in enumerate(phases):
        xs = [0 + (i - 0.5) * width, 1 + (i - 0.5) * width]
        bars = axes[0].bar(xs, [r["p50_ms"], r["p99_ms"]], width=width, color=colour, label=name)
        axes[0].bar_label(bars, fmt="%.0f", fontsize=8)
        hb = axes[1].bar([(i - 0.5) * width], [r["health_p99_ms"]], width=width, color=colour)
        axes[1].bar_label(hb, fmt="%.0f", fontsize=8)
    axes[0].set_xticks([0, 1], [f"{report['mode']} search p50", f"{report['mode']} search p99"])
    axes[0].set_ylabel("latency, ms (lower is better)")
    axes[0].set_ylim(0, max(report["ingest"]["p99_ms"], report["idle"]["p99_ms"]) * 1.2)
    axes[0].legend(frameon=False, fontsize=8, loc="upper left")
    axes[0].set_title(f"search, p99 ingest/idle = {report['p99_ratio']:.2f}x", loc="left")
    axes[1].set_xticks([0], ["/health p99"])
    axes[1].set_xlim(-0.7, 0.7)
    axes[1].set_ylim(0, max(report["ingest"]["health_p99_ms"], report["idle"]["health_p99_ms"]) * 1.25)
    axes[1].set_ylabel("ms")
    axes[1].set_title("/health, polled every 50 ms", loc="left")
    for ax in axes:
        ax.grid(axis="y", color="#e5e5e5")
        ax.set_axisbelow(True)
    errors = report["idle"]["errors"] + report["ingest"]["errors"]
    seconds = f" for {report['seconds']:g} s per phase" if "seconds" in report else ""
    subtitle = "\n".join((
        machine(report, "search_under_ingest.json"),
        f"A real `ragline serve` over {report['docs']:,} SciFact documents, {report['clients']} concurrent clients"
        f"{seconds}; ingest = a 200-page PDF and a pathological PDF uploaded.",
        f"Throughput {report['idle']['qps']} req/s idle vs {report['ingest']['qps']} req/s while ingesting; "
        f"{errors} errors.",
    ))
    titled(fig, "Search latency while files ingest", subtitle)
    return save(fig, out, "search_under_ingest.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON results are")
    parser.add_argument("--out", type=Path, default=None, help="where to write the PNGs (default: --results)")
    args = parser.parse_args(argv)
    out = args.out or args.results
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Callable[[dict[str, Any]], Path]]] = [
        ("retrieval_quality.json", lambda r: plot_quality(r, load(args.results / "peers.json"), out)),
        ("retrieval_latency.json", lambda r: plot_latency(r, out)),
        ("ingest.json", lambda r: plot_ingest(r, out)),
        ("search_under_ingest.json", lambda r: plot_under_ingest(r, out)),
    ]
    drawn = 0
    for name, draw in figures:
        report = load(args.results / name)
        if report is None:
            print(f"skipped: no {args.results / name}", file=sys.stderr)
            continue
        draw(report)
        drawn += 1
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main())
