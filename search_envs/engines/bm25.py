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

The index is a (terms x passages) CSR matrix of per-term scores, written out of core
by `search_envs.bm25_build`, loaded memory-mapped (many server workers share the
pages), and searched a batch at a time with one sparse product per slice of queries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from search_envs.analysis import Analyzer, get_analyzer
from search_envs.corpus import PassageStore
from search_envs.engines import StoreEngine

SUBDIR = "bm25"
SCHEMES: dict[str, dict[str, Any]] = {
    "lucene": {"analyzer": "lucene-english", "k1": 0.9, "b": 0.4, "lengths": "lucene-byte4"},
    "bm25s": {"analyzer": "bm25s", "k1": 1.5, "b": 0.75, "lengths": "exact"},
}
DEFAULT_SCHEME = "lucene"
QUERY_SLICE = 64  # queries per sparse product: per-query cost stays flat however large the batch


class BM25Engine(StoreEngine):
    name = "bm25"
    build_params = ("scheme", "k1", "b", "workers", "memory_mb")
    load_params = ("n_threads",)

    def __init__(self, directory: str | Path, manifest: dict[str, Any] | None = None, n_threads: int = 0):
        directory = Path(directory)
        self.directory = directory
        self.manifest = manifest or {}
        self.n_threads = n_threads if n_threads > 0 else min(2, os.cpu_count() or 1)
        if "scheme" not in self.manifest:
            raise ValueError(
                f"{directory}: a BM25 index from an older version of search-envs (no 'scheme' in its manifest); rebuild it"
            )
        self.analyzer: Analyzer = get_analyzer(self.manifest["analyzer"])
        sub = directory / SUBDIR
        self.vocab: dict[str, int] = json.loads((sub / "vocab.json").read_text(encoding="utf-8"))
        data = np.load(sub / "data.npy", mmap_mode="r")
        indices = np.load(sub / "indices.npy", mmap_mode="r")
        indptr = np.load(sub / "indptr.npy", mmap_mode="r")
        self.tie_rank = np.load(sub / "tie_rank.npy", mmap_mode="r")  # passage-id order, for ties
        self.store = PassageStore(directory, self.manifest.get("store"))
        n = len(self.store)
        if len(indptr) != len(self.vocab) + 1 or int(indptr[-1]) != len(data) or len(indices) != len(data):
            raise ValueError(f"{sub}: score matrix arrays disagree with each other or with vocab.json")
        if len(self.tie_rank) != n:
            raise ValueError(f"{sub / 'tie_rank.npy'}: {len(self.tie_rank)} entries but the passage store has {n}")
        self.matrix = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(self.vocab), n), copy=False)

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

    def query_matrix(self, queries: Sequence[str]) -> scipy.sparse.csr_matrix:
        """(queries x vocabulary) term counts: a repeated query term weighs twice, as
        Anserini's bag-of-words query boosts a term by its count."""
        qi, ti = [], []
        for i, text in enumerate(queries):
            for term in self.analyzer(text):
                j = self.vocab.get(term)
                if j is not None:
                    qi.append(i)
                    ti.append(j)
        dtype = self.matrix.dtype
        return scipy.sparse.csr_matrix((np.ones(len(qi), dtype=dtype), (qi, ti)), shape=(len(queries), self.matrix.shape[0]))

    def search_rows(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) for a batch; a row of -1 marks no result (a query with no known term).

        The batch is cut into slices of QUERY_SLICE queries, each scored with one sparse
        product (queries x vocabulary) @ (vocabulary x passages); each query's top k is
        then taken among the passages it matches, best score first, ties by passage id.
        Slices run on `n_threads` threads (scipy's sparse product releases the GIL).
        """
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.zeros((len(queries), k), dtype=np.float32)
        slices = [range(i, min(i + QUERY_SLICE, len(queries))) for i in range(0, len(queries), QUERY_SLICE)]
        q = self.query_matrix(queries)  # tokenizing is Python: done once, before the threads

        def run(rows: range) -> None:
            scores = (q[rows.start : rows.stop] @ self.matrix).tocsr()  # rows unsorted: ties are settled below
            for i in range(len(rows)):
                lo, hi = scores.indptr[i], scores.indptr[i + 1]
                data, docs = scores.data[lo:hi], scores.indices[lo:hi]
                if len(data) > k:
                    cut = np.partition(data, len(data) - k)[len(data) - k]
                    keep = np.flatnonzero(data >= cut)
                    data, docs = data[keep], docs[keep]
                order = np.lexsort((self.tie_rank[docs], -data))[:k]
                order = order[data[order] > 0]
                out_rows[rows.start + i, : len(order)], out_scores[rows.start + i, : len(order)] = docs[order], data[order]

        if self.n_threads > 1 and len(slices) > 1:
            with ThreadPoolExecutor(self.n_threads) as pool:
                list(pool.map(run, slices))
        else:
            for rows in slices:
                run(rows)
        return out_rows, out_scores
