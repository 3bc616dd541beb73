"""BM25 over a passage store, scored as Pyserini (Lucene) scores by default.

Two named schemes:

- `lucene` (default): what Search-R1 and FlashRAG rank with (Pyserini's default
  BM25): Lucene's English analyzer (`search_envs.analysis`), k1=0.9, b=0.4,
  idf = ln(1 + (N - df + 0.5) / (df + 0.5)), and document lengths as Lucene stores
  them: one byte per document (`SmallFloat.intToByte4`: exact below 24 terms, then
  4 significant bits), so passages of similar length share a length and often tie.
  Each term's score is computed as Lucene's BM25Scorer does, in float32
  (`w - w / (1 + tf * normInverse)`), and ties are broken by passage id (as
  Anserini's searcher sorts them), so the top hits agree with Pyserini's.
- `bm25s`: this library's first BM25 (bm25s tokens `\\w\\w+`, Snowball English,
  k1=1.5, b=0.75, exact lengths), kept for reproducing older results.

The index holds compressed postings (term frequencies and passage rows, written out of
core by `search_envs.bm25_build`) plus each passage's length, loaded memory-mapped (many
server workers share the pages). Scores are computed per query by the compiled kernel in
`search_envs.postings`, as Lucene computes them, on `n_threads` threads.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from search_envs import postings
from search_envs.analysis import Analyzer, get_analyzer
from search_envs.bm25_build import idf, norm_table
from search_envs.corpus import PassageStore
from search_envs.engines import StoreEngine

SUBDIR = "bm25"
SCHEMES: dict[str, dict[str, Any]] = {
    "lucene": {"analyzer": "lucene-english", "k1": 0.9, "b": 0.4, "lengths": "lucene-byte4"},
    "bm25s": {"analyzer": "bm25s", "k1": 1.5, "b": 0.75, "lengths": "exact"},
}
DEFAULT_SCHEME = "lucene"
QUERY_SLICE = 64  # queries per kernel call: slices spread over the threads


class BM25Engine(StoreEngine):
    name = "bm25"
    build_params = ("scheme", "k1", "b", "workers", "memory_mb")
    load_params = ("n_threads", "prune")

    def __init__(self, directory: str | Path, manifest: dict[str, Any] | None = None, n_threads: int = 0, prune: bool = True):
        directory = Path(directory)
        self.prune = bool(prune)  # MaxScore: the same top k, fewer postings decoded (off: score every posting)
        self.directory = directory
        self.manifest = manifest or {}
        self.n_threads = n_threads if n_threads > 0 else min(2, os.cpu_count() or 1)
        if "scheme" not in self.manifest or self.manifest.get("postings_format") != postings.FORMAT:
            raise ValueError(
                f"{directory}: a BM25 index from an older version of search-envs (postings format "
                f"{self.manifest.get('postings_format', 'score matrix')!r}, this version reads {postings.FORMAT!r}); rebuild it"
            )
        self.analyzer: Analyzer = get_analyzer(self.manifest["analyzer"])
        sub = directory / SUBDIR
        self.vocab: dict[str, int] = json.loads((sub / "vocab.json").read_text(encoding="utf-8"))
        self.df = np.load(sub / "df.npy", mmap_mode="r")
        self.offsets = np.load(sub / "offsets.npy", mmap_mode="r")
        size = (sub / "postings.bin").stat().st_size
        self.postings = np.memmap(sub / "postings.bin", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        self.tie_rank = np.load(sub / "tie_rank.npy", mmap_mode="r")  # passage-id order, for ties
        self.store = PassageStore(directory, self.manifest.get("store"))
        n = len(self.store)
        if len(self.df) != len(self.vocab) or len(self.offsets) != len(self.vocab) + 1 or int(self.offsets[-1]) != size:
            raise ValueError(f"{sub}: df.npy, offsets.npy, postings.bin and vocab.json disagree with each other")
        if len(self.tie_rank) != n:
            raise ValueError(f"{sub / 'tie_rank.npy'}: {len(self.tie_rank)} entries but the passage store has {n}")
        docs, avgdl, k1, b = self.manifest["docs_with_terms"], self.manifest["avgdl"], self.manifest["k1"], self.manifest["b"]
        if self.manifest["lengths"] == "exact":
            self.scheme = postings.SCHEME_BM25S
            lengths = np.load(sub / "lengths.npy", mmap_mode="r")
            if lengths.min(initial=0) < 0:
                raise ValueError(f"{sub / 'lengths.npy'}: negative passage lengths")
            self.weight = idf(self.df, docs)
            self.norms = lengths
            self.table = k1 * (1 - b + b * np.arange(int(lengths.max(initial=0)) + 1, dtype=np.float64) / avgdl)
        else:
            self.scheme = postings.SCHEME_LUCENE
            self.weight = idf(self.df, docs).astype(np.float32)
            self.norms = np.load(sub / "norms.npy", mmap_mode="r")
            self.table = norm_table(self.manifest, avgdl)
        if not (np.all(np.isfinite(self.weight)) and (len(self.weight) == 0 or self.weight.min() > 0)) or not np.all(self.table >= 0):
            raise ValueError(f"{sub}: df.npy or the manifest's k1, b, avgdl give scores that are not positive")
        if len(self.norms) != n:
            raise ValueError(f"{sub}: passage lengths for {len(self.norms)} passages but the passage store has {n}")
        self.block_offset = np.load(sub / "block_offset.npy", mmap_mode="r")
        self.block_last = np.load(sub / "block_last.npy", mmap_mode="r")
        self.block_max = np.load(sub / "block_max.npy", mmap_mode="r")
        self.first_block = np.concatenate([[0], np.cumsum(postings.n_blocks(self.df))])
        self._pool: ThreadPoolExecutor | None = None  # made on the first batch that needs it
        self._pool_pid = 0
        blocks = int(self.first_block[-1])
        if not len(self.block_offset) == len(self.block_last) == len(self.block_max) == blocks:
            raise ValueError(f"{sub}: the block_*.npy files disagree with df.npy")

    @staticmethod
    def build(
        directory: Path,
        scheme: str = DEFAULT_SCHEME,
        k1: float | None = None,
        b: float | None = None,
        workers: int = 0,
        memory_mb: int = 1024,
        show_progress: bool = True,
    ) -> dict[str, Any]:
        """Index the store in `directory` out of core; returns the manifest fields of this engine.

        `scheme` picks analyzer, length encoding and default k1/b ("lucene" or
        "bm25s"); `workers` tokenizing processes (0: one per core, at most 2);
        `memory_mb` bounds the build's working memory (chunk and merge sizes).
        """
        from search_envs.bm25_build import build_bm25

        if scheme not in SCHEMES:
            raise ValueError(f"unknown BM25 scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
        params = {**SCHEMES[scheme]}
        params["k1"] = float(params["k1"] if k1 is None else k1)
        params["b"] = float(params["b"] if b is None else b)
        stats = build_bm25(
            directory, directory / SUBDIR, params, workers=workers, memory_mb=memory_mb, show_progress=show_progress
        )
        return {"engine": "search-envs-bm25", "scheme": scheme, **params, **get_analyzer(params["analyzer"]).describe(), **stats}

    def query_terms(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(qptr, term ids, counts): query i's known terms are qptr[i]..qptr[i+1], each
        once with how often the query asks it (Anserini boosts a repeated term by its count)."""
        qptr, terms, counts = [0], [], []
        for text in queries:
            found = Counter(j for j in map(self.vocab.get, self.analyzer(text)) if j is not None)
            terms += found.keys()
            counts += found.values()
            qptr.append(len(terms))
        return np.asarray(qptr, np.int64), np.asarray(terms, np.int64), np.asarray(counts, np.int64)

    def search_rows(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) for a batch; a row of -1 marks no result (a query with no known term).

        Tokenizing is Python, done once; scoring runs in slices of QUERY_SLICE queries on
        `n_threads` threads (the kernel releases the GIL). `last_counters` then says how
        many postings the batch's terms have, how many were scored, and how many passages
        were looked up in a term (MaxScore).
        """
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.zeros((len(queries), k), dtype=np.float32)
        qptr, terms, counts = self.query_terms(queries)
        size = max(1, min(QUERY_SLICE, -(-len(queries) // self.n_threads)))  # a small batch still uses every thread
        slices = [(i, min(i + size, len(queries))) for i in range(0, len(queries), size)]
        counters = np.zeros((len(slices), 4), dtype=np.int64)

        def run(bounds: tuple[int, int]) -> int:
            lo, hi = bounds
            return postings.search(
                qptr[lo : hi + 1], terms, counts, self.offsets, self.df, self.postings, self.weight, self.norms,
                self.table, self.scheme, self.first_block, self.block_offset, self.block_last, self.block_max, self.prune,
                self.tie_rank, k, out_rows[lo:hi], out_scores[lo:hi], counters[lo // size],
            )

        if self.n_threads > 1 and len(slices) > 1:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child has none of the parent's threads
                self._pool, self._pool_pid = ThreadPoolExecutor(self.n_threads, thread_name_prefix="bm25"), os.getpid()
            statuses = list(self._pool.map(run, slices))
        else:
            statuses = [run(b) for b in slices]
        self.last_counters = dict(zip(("postings", "scored", "looked up", "stepped"), counters.sum(axis=0).tolist()))
        if postings.CORRUPT in statuses:
            from search_envs.index import BrokenIndexError

            raise BrokenIndexError(self.directory, f"{SUBDIR}/postings.bin does not decode (the file changed after the build)")
        return out_rows, out_scores

    def close(self) -> None:
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.shutdown()
            self._pool = None
        super().close()
