"""Hybrid retrieval: reciprocal-rank fusion of BM25 and dense results.

RRF (Cormack et al., 2009) needs no score calibration: a passage's fused score
is the sum over engines of 1 / (rrf_k + rank). Each engine is asked for
`fetch_k` (default 4*k) results so passages ranked low by one engine can still win.
"""

from __future__ import annotations

from collections.abc import Sequence

from search_envs.engines.base import SearchEngine
from search_envs.types import Document, QueryContext

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[list[Document]], k: int, rrf_k: int = RRF_K) -> list[Document]:
    """Fuse ranked lists by passage id; the fused score replaces the engines' scores."""
    scores: dict[str, float] = {}
    first: dict[str, Document] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, 1):
            scores[doc.id] = scores.get(doc.id, 0.0) + 1.0 / (rrf_k + rank)
            first.setdefault(doc.id, doc)
    best = sorted(scores, key=lambda i: -scores[i])[:k]
    return [Document(i, first[i].title, first[i].text, scores[i]) for i in best]


class HybridEngine(SearchEngine):
    """RRF over a BM25 and a dense engine (`search_envs.index` loads a hybrid index into one)."""

    name = "hybrid"
    load_params = ("rrf_k", "fetch_k")

    def __init__(self, bm25: SearchEngine, dense: SearchEngine, rrf_k: int = RRF_K, fetch_k: int | None = None):
        self.bm25, self.dense, self.rrf_k, self.fetch_k = bm25, dense, rrf_k, fetch_k

    def search(
        self, queries: Sequence[str], k: int, contexts: Sequence[QueryContext] | None = None
    ) -> list[list[Document]]:
        fetch = max(k, self.fetch_k or 4 * k)
        lexical = self.bm25.search(queries, fetch)
        semantic = self.dense.search(queries, fetch)
        return [reciprocal_rank_fusion((a, b), k, self.rrf_k) for a, b in zip(lexical, semantic)]

    def close(self) -> None:
        self.bm25.close()
        self.dense.close()
