"""Passage store write speed: the first step of every index build (issue 11).

    OMP_NUM_THREADS=1 python benchmarks/store_write.py corpora/synth_200000.jsonl corpora/synth_1000000.jsonl

For each corpus, in the same run: `write_store(iter_passages(corpus))` (the one-process
streaming path every build used before `search_envs.store_build`), `write_corpus_store`
in this process (`workers=1`) and on all cores (the default: what `build_index` runs,
hashing the corpus in the same read), and `file_sha256` alone (the second read of the
corpus the build no longer makes). Each store goes into a temporary directory next to the
corpus, deleted afterwards; all three stores are checked byte for byte equal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from search_envs.corpus import file_sha256, iter_passages
from search_envs.store import STORE_DICT, STORE_OFFSETS, STORE_PACKED, write_store
from search_envs.store_build import write_corpus_store


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(corpus: Path) -> dict[str, float]:
    dirs = {name: Path(tempfile.mkdtemp(dir=corpus.parent, prefix=f"store-{name}-")) for name in ("stream", "one", "pool")}
    try:
        times = {
            "stream": timed(lambda: write_store(iter_passages(corpus), dirs["stream"]))[0],
            "one": timed(lambda: write_corpus_store(corpus, dirs["one"], workers=1))[0],
            "pool": timed(lambda: write_corpus_store(corpus, dirs["pool"]))[0],
            "sha256": timed(lambda: file_sha256(corpus))[0],
        }
        for name in (STORE_PACKED, STORE_DICT, STORE_OFFSETS):
            ref = (dirs["stream"] / name).read_bytes()
            assert ref == (dirs["one"] / name).read_bytes() == (dirs["pool"] / name).read_bytes(), name
        return times
    finally:
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpora", nargs="+", type=Path)
    args = parser.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}, load average before: {os.getloadavg()[0]:.2f}")
    print("| corpus | MiB | write_store(iter_passages) s | write_corpus_store, 1 process s | write_corpus_store, all cores s | file_sha256 alone s |")
    print("|---|---|---|---|---|---|")
    for corpus in args.corpora:
        t = run(corpus)
        print(f"| {corpus.name} | {corpus.stat().st_size / 2**20:.0f} | {t['stream']:.2f} | {t['one']:.2f} | {t['pool']:.2f} | {t['sha256']:.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
