"""Retrieval speed on the embedded corpus: index build time, queries/second batched vs
one query at a time, and BM25Engine's overhead over a raw bm25s call.

Queries are the articles' short descriptions ("Play by William Shakespeare", ...),
so they look like an agent's short search queries and always have an answer.
Each timing is the best of `--repeats` runs. The dense index (flat, MiniLM) is
built from scratch; when the cache has none yet, the built one is moved there so
`open_engine("dense")` reuses it.

    python benchmarks/retrieval_speed.py                      # bm25 + dense, whole corpus
    python benchmarks/retrieval_speed.py --dense-articles 500 --no-readme
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.report import append_readme, markdown_table, out_dir  # noqa: E402
from search_envs.corpus import embedded_corpus_path, embedded_subset_path  # noqa: E402
from search_envs.data import embedded_articles  # noqa: E402
from search_envs.engines import cached_index_dir  # noqa: E402
from benchmarks.bm25s_baseline import raw_bm25s  # noqa: E402
from search_envs.index import build_index, load_index  # noqa: E402


def best_of(repeats: int, fn) -> float:
    """Fastest wall time of `repeats` calls (the least disturbed by other load)."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def query_rates(engine, queries: list[str], k: int, repeats: int) -> tuple[float, float]:
    """(batched, one-at-a-time) queries per second."""
    batched = best_of(repeats, lambda: engine.search(queries, k))
    single = best_of(repeats, lambda: [engine.search_one(q, k) for q in queries])
    return len(queries) / batched, len(queries) / single


def bench_bm25(corpus: Path, queries: list[str], k: int, repeats: int, work: Path) -> dict:
    build_s = best_of(1, lambda: build_index(corpus, "bm25", work / "bm25", show_progress=False))
    engine = load_index(work / "bm25")
    batched, single = query_rates(engine, queries, k, repeats)
    retrieve = raw_bm25s(engine)
    raw = best_of(repeats, lambda: retrieve(queries, k))
    wrapped = best_of(repeats, lambda: engine.search(queries, k))
    row = {"engine": "bm25", "passages": len(engine.store), "build s": build_s, "passages/s (build)": len(engine.store) / build_s,
           "q/s batched": batched, "q/s one-by-one": single, "batched / one-by-one": batched / single,
           "raw bm25s q/s": len(queries) / raw, "BM25Engine overhead %": 100 * (wrapped - raw) / raw}
    engine.close()
    return row


def bench_dense(corpus: Path, queries: list[str], k: int, repeats: int, work: Path, device: str | None) -> dict:
    from search_envs.engines.dense import load_encoder

    encoder = load_encoder(device=device)
    out = work / "dense"
    build_s = best_of(1, lambda: build_index(corpus, "dense", out, encoder=encoder))
    engine = load_index(out, encoder=encoder)
    batched, single = query_rates(engine, queries, k, repeats)
    row = {"engine": "dense (MiniLM, flat)", "passages": len(engine.store), "build s": build_s,
           "passages/s (build)": len(engine.store) / build_s,
           "q/s batched": batched, "q/s one-by-one": single, "batched / one-by-one": batched / single}
    engine.close()
    cached = cached_index_dir("dense", corpus)
    if corpus == embedded_corpus_path() and not cached.exists():
        shutil.move(str(out), str(cached))
        print(f"kept the dense index as {cached}")
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [r["engine"] for r in rows]
    x = range(len(rows))
    for shift, key, label in ((-0.2, "q/s batched", "batched"), (0.2, "q/s one-by-one", "one query at a time")):
        bars = ax.bar([i + shift for i in x], [r[key] for r in rows], 0.4, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.set_ylim(bottom=min(r["q/s one-by-one"] for r in rows) / 3)
    ax.set_ylabel("queries / second (log)")
    ax.set_title("Retrieval throughput on the embedded corpus")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=256, help="number of queries")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-articles", type=int, default=None, help="dense on a subset (default: all)")
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--device", default=None, help="encoder device (default: sentence-transformers' choice)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default bench_out/)")
    parser.add_argument("--no-readme", action="store_true", help="do not append to benchmarks/README.md")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    queries = [a.description for a in embedded_articles() if a.description][:: 9][: args.queries]
    corpus = embedded_corpus_path()
    rows = []
    with tempfile.TemporaryDirectory(prefix="retrieval_speed-") as tmp:
        rows.append(bench_bm25(corpus, queries, args.k, args.repeats, Path(tmp)))
        if not args.skip_dense:
            dense_corpus = corpus if args.dense_articles is None else embedded_subset_path(args.dense_articles)
            rows.append(bench_dense(dense_corpus, queries, args.k, args.repeats, Path(tmp), args.device))
    columns = ["engine", "passages", "build s", "passages/s (build)", "q/s batched", "q/s one-by-one",
               "batched / one-by-one", "raw bm25s q/s", "BM25Engine overhead %"]
    table = markdown_table(rows, columns)
    print(table)
    out = args.out or out_dir()
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / "retrieval_speed.png")
    if not args.no_readme:
        append_readme(
            "Retrieval speed",
            f"{len(queries)} queries (article descriptions), k={args.k}, best of {args.repeats}. "
            "Build = chunking + store + index (dense: encoding with all-MiniLM-L6-v2, batch 64). "
            f"Load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f} "
            "(other jobs share the cores: compare ratios, not absolute rates).\n\n" + table,
        )


if __name__ == "__main__":
    main()
