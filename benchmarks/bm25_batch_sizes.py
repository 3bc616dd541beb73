"""BM25 queries per second by batch size: a large batch must not be slower per query than
a small one (issue 11). Uses an index built by bm25_vs_pyserini.py and its questions.

    python benchmarks/bm25_batch_sizes.py /work/bench11/synth_1000000.ours /work/bench11/queries.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search_envs.index import load_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bm25_vs_pyserini import best_qps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index")
    parser.add_argument("queries", help="a JSON list of question strings")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 16, 64, 256, 1000])
    args = parser.parse_args()
    queries = json.load(open(args.queries, encoding="utf-8"))[:1000]
    engine = load_index(args.index)
    engine.search(queries[:64], 10)
    print("| batch size | q/s top-10 | q/s top-3 |\n|---|---|---|")
    for size in args.sizes:
        row = [best_qps(engine, queries, k, size) for k in (10, 3)]
        print(f"| {size} | {row[0]:,.0f} | {row[1]:,.0f} |", flush=True)
    engine.close()


if __name__ == "__main__":
    main()
