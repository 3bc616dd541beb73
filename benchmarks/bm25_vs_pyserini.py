"""Our BM25 against Pyserini 1.6 (Lucene) on the same passages: ranking agreement,
build time / peak memory / size on disk, and queries per second with passage text.

    python benchmarks/bm25_vs_pyserini.py --corpora wiki1k embedded --synthetic 200000 1000000 \\
        --pyserini-python /work/venvs/pyserini/bin/python

Corpora: `wiki1k` (the shared wiki-18 sample, $SEARCH_ENVS_DATA), `embedded` (the 10k
embedded Wikipedia leads, chunked into ~100-word passages), and synthetic wiki-18-shaped
corpora of the given sizes (benchmarks/make_corpus.py). Pyserini indexes exactly the
passages our store holds. Queries: the shared QA questions (R1-Searcher's and
DeepResearcher's samples, ~2,500).

Agreement: top-1 = share of queries whose first hit is the same passage; Jaccard@10 =
mean |ours & theirs| / |ours | theirs| over the top 10. Speed: ours is
`engine.search(queries, k)` (Documents with text) on the whole batch, 2 threads;
Pyserini's is `batch_search(threads=2)` plus fetching each hit's stored text. Builds
run in fresh processes (peak memory = the largest process's max RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import append_readme, markdown_table  # noqa: E402

HERE = Path(__file__).resolve().parent


def data_dir() -> Path:
    return Path(os.environ.get("SEARCH_ENVS_DATA", HERE.parent.parent / "shared" / "data"))


def questions() -> list[str]:
    qa = data_dir() / "qa"
    out = []
    for name in ("hotpotqa_500", "2wiki_500", "musique_500", "bamboogle"):
        path = qa / f"r1searcher_{name}.jsonl"
        if path.is_file():
            out += [json.loads(line)["question"] for line in path.open(encoding="utf-8")]
    parquet = qa / "deepresearcher_dev_7datasets.parquet"
    if parquet.is_file():
        import pandas as pd

        out += [str(p[0]["content"]) for p in pd.read_parquet(parquet)["prompt"]]
    if not out:
        from search_envs.data import embedded_articles

        out = [a.description or a.title for a in embedded_articles()[::5]]
    return out


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_child(cmd: list[str]) -> tuple[str, float, float]:
    """(stdout, seconds, peak GiB of the largest process it ran)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed:\n{proc.stderr[-3000:]}")
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024**2
    return proc.stdout, seconds, peak


def build_ours(corpus: Path, out: Path, memory_mb: int) -> dict:
    code = (
        "import sys; from search_envs.index import build_index; "
        f"build_index(sys.argv[1], 'bm25', sys.argv[2], overwrite=True, memory_mb={memory_mb}, show_progress=False)"
    )
    _, seconds, peak = run_child([sys.executable, "-c", code, str(corpus), str(out)])
    return {"build s": seconds, "build peak GiB": peak, "index MiB": dir_bytes(out) / 2**20}


def passages_file(index: Path, corpus: Path, work: Path) -> Path:
    """The store's passages as a FlashRAG jsonl (the corpus itself when nothing was chunked)."""
    manifest = json.loads((index / "manifest.json").read_text())
    if manifest["passages"] == manifest["records"] and manifest.get("bad_lines_skipped", 0) == 0:
        return corpus
    from search_envs.corpus import PassageStore

    store = PassageStore(index)
    path = work / f"{corpus.stem}.passages.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(0, len(store), 10_000):
            for p in store.get_many(range(i, min(i + 10_000, len(store)))):
                f.write(json.dumps({"id": p.id, "contents": f'"{p.title}"\n{p.text}'}, ensure_ascii=False) + "\n")
    store.close()
    return path


def best_qps(engine, queries: list[str], k: int, batch: int) -> float:
    """Queries per second of `engine.search` over `queries` in batches of `batch`, best of two runs."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        for i in range(0, len(queries), batch):
            engine.search(queries[i : i + batch], k)
        best = min(best, time.perf_counter() - start)
    return len(queries) / best


def ours_search(index: Path, queries: list[str], k: int) -> dict:
    """ids, q/s on the whole batch and in batches of 64 (best of two runs, text returned),
    the share of the query terms' postings MaxScore scored in its windows, and q/s of the
    same engine scoring every posting (prune=False: the same results, the obvious way)."""
    from search_envs.index import load_index

    engine = load_index(index)
    engine.search(queries[:64], k)
    qps_all, qps_64 = best_qps(engine, queries, k, len(queries)), best_qps(engine, queries, k, 64)
    results = engine.search(queries, k)
    c = engine.last_counters
    assert all(d.text for r in results for d in r)
    engine.close()
    exhaustive = load_index(index, prune=False, verify=False)
    exhaustive.search(queries[:64], k)
    qps_exhaustive = best_qps(exhaustive, queries, k, len(queries))
    same = [[d.id for d in r] for r in exhaustive.search(queries, k)] == [[d.id for d in r] for r in results]
    exhaustive.close()
    return {"ids": [[d.id for d in r] for r in results], "all": qps_all, "64": qps_64, "exhaustive": qps_exhaustive,
            "share": c["scored"] / max(1, c["postings"]), "same": same}


def pyserini(python: str, *args: str) -> str:
    out, _, _ = run_child([python, str(HERE / "pyserini_ref.py"), *args])
    return out.strip().splitlines()[-1]


def agreement(ours: list[list[str]], theirs: list[list[str]]) -> dict:
    top1, jac = [], []
    for a, b in zip(ours, theirs):
        if not a and not b:
            continue
        top1.append(bool(a) and bool(b) and a[0] == b[0])
        jac.append(len(set(a) & set(b)) / len(set(a) | set(b)))
    return {"queries": len(top1), "top-1 agreement": float(np.mean(top1)), "Jaccard@10": float(np.mean(jac))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="*", default=["wiki1k", "embedded"], help="wiki1k, embedded or paths of jsonl corpora")
    parser.add_argument("--synthetic", nargs="*", type=int, default=[200_000])
    parser.add_argument("--pyserini-python", default=os.environ.get("PYSERINI_PYTHON", "/work/venvs/pyserini/bin/python"))
    parser.add_argument("--workdir", default=None, help="where corpora and indexes go (default: a temp dir)")
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=0, help="use only the first N questions (0: all)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    from search_envs.corpus import embedded_corpus_path

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bm25-vs-pyserini-"))
    work.mkdir(parents=True, exist_ok=True)
    queries = questions()[: args.queries or None]
    qfile = work / "queries.json"
    qfile.write_text(json.dumps(queries))
    corpora: list[tuple[str, Path]] = []
    for name in args.corpora:  # wiki1k, embedded, or the path of a jsonl corpus
        if name.endswith(".jsonl"):
            corpora.append((Path(name).stem, Path(name)))
        else:
            corpora.append((name, data_dir() / "corpus" / "wiki18_sample_1000.jsonl" if name == "wiki1k" else embedded_corpus_path()))
    for n in args.synthetic:
        path = work / f"synth_{n}.jsonl"
        if not path.is_file():
            subprocess.run([sys.executable, str(HERE / "make_corpus.py"), str(n), str(path)], check=True, capture_output=True)
        corpora.append((f"synthetic {n:,}", path))

    agree_rows, speed_rows = [], []
    for name, corpus in corpora:
        ours_dir, lucene_dir = work / f"{corpus.stem}.ours", work / f"{corpus.stem}.lucene"
        ours_build = build_ours(corpus, ours_dir, args.memory_mb)
        pfile = passages_file(ours_dir, corpus, work)
        lucene_build = json.loads(pyserini(args.pyserini_python, "index", str(pfile), str(lucene_dir), "--threads", "2"))
        row = {"corpus": name, "passages": json.loads((ours_dir / "manifest.json").read_text())["passages"]}
        for k in (10, 3):
            ours = ours_search(ours_dir, queries, k)
            ids, qps_all, qps_64 = ours["ids"], ours["all"], ours["64"]
            assert ours["same"], "pruned and exhaustive results differ"
            theirs_file = work / f"{corpus.stem}.lucene.k{k}.json"
            timing = json.loads(pyserini(args.pyserini_python, "search", str(lucene_dir), str(qfile), str(theirs_file),
                                          "--k", str(k), "--threads", "2", "--with-text"))
            theirs = json.loads(theirs_file.read_text())["ids"]
            if k == 10:
                agree_rows.append({**row, **agreement(ids, theirs)})
            speed_rows.append({**row, "k": k, "ours q/s (all at once)": qps_all, "ours q/s (batches of 64)": qps_64,
                               "Pyserini q/s (threads=2)": timing["qps"], "ours / Pyserini": qps_all / timing["qps"],
                               "Pyserini q/s without text": timing["qps_ids_only"], "ours q/s scoring every posting": ours["exhaustive"],
                               "share of postings scored": ours["share"]})
        speed_rows[-2].update({
            "ours build s": ours_build["build s"], "Pyserini build s": lucene_build["build_s"],
            "ours peak GiB": ours_build["build peak GiB"], "Pyserini peak GiB": lucene_build["peak_gib"],
            "ours index MiB": ours_build["index MiB"], "Lucene index MiB": lucene_build["index_bytes"] / 2**20,
        })
        print(markdown_table(agree_rows[-1:], list(agree_rows[-1])), flush=True)
        print(markdown_table(speed_rows[-2:], list(speed_rows[-2])), flush=True)
        (work / "results.json").write_text(json.dumps({"agreement": agree_rows, "speed": speed_rows}, indent=1))
    agree = markdown_table(agree_rows, ["corpus", "passages", "queries", "top-1 agreement", "Jaccard@10"])
    speed_cols = ["corpus", "passages", "k", "ours q/s (all at once)", "ours q/s (batches of 64)", "Pyserini q/s (threads=2)",
                  "ours / Pyserini", "Pyserini q/s without text", "ours q/s scoring every posting", "share of postings scored"]
    build_cols = ["corpus", "passages", "ours build s", "Pyserini build s", "ours peak GiB", "Pyserini peak GiB",
                  "ours index MiB", "Lucene index MiB"]
    body = (f"{len(queries)} questions.\n\n" + agree + "\n\n" + markdown_table(speed_rows, speed_cols) + "\n\n"
            + markdown_table([r for r in speed_rows if "ours build s" in r], build_cols))
    print(body)
    if not args.no_readme:
        append_readme("BM25 vs Pyserini 1.6 (Lucene): agreement, build, q/s", body)


if __name__ == "__main__":
    main()
