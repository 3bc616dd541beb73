"""Engines whose index returns rows of a passage store (BM25, dense)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from search_envs.engines.base import SearchEngine
from search_envs.types import Document, QueryContext


def live_queries(queries: Sequence[str]) -> list[int]:
    """Positions of the queries worth searching (empty or whitespace-only ones get [])."""
    return [i for i, q in enumerate(queries) if isinstance(q, str) and q.strip()]


class StoreEngine(SearchEngine):
    """An engine whose index returns passage-store rows: subclasses set `self.store`
    and implement `search_rows`; this class skips empty queries and builds Documents.

    Subclasses name their own parameters: `build_params` (what their `build` takes,
    fixed in the index) and `load_params` (search-time settings their constructor takes).
    """

    store: Any
    build_params: ClassVar[tuple[str, ...]] = ()
    load_params: ClassVar[tuple[str, ...]] = ()

    def search_rows(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores), each (len(queries), <= k); a row of -1 marks no result."""
        raise NotImplementedError

    def search(
        self, queries: Sequence[str], k: int, contexts: Sequence[QueryContext] | None = None
    ) -> list[list[Document]]:
        out: list[list[Document]] = [[] for _ in queries]
        live = live_queries(queries)
        if not live or k <= 0:
            return out
        rows, scores = self.search_rows([queries[i] for i in live], min(k, len(self.store)))
        found = rows >= 0
        docs = iter(self.store.documents(rows[found], scores[found]))  # one store read per batch
        for i, n in zip(live, found.sum(axis=1)):
            out[i] = [next(docs) for _ in range(n)]
        return out

    def close(self) -> None:
        self.store.close()
