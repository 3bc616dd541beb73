"""Local search engines behind one batched interface, and `open_engine`, which
loads a prebuilt index or builds one into the cache on first use."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from search_envs.engines.base import SearchEngine
from search_envs.types import Document, QueryContext

__all__ = ["SearchEngine", "open_engine", "build_index", "load_index", "cached_index_dir", "live_queries"]


def live_queries(queries: Sequence[str]) -> list[int]:
    """Positions of the queries worth searching (empty or whitespace-only ones get [])."""
    return [i for i, q in enumerate(queries) if isinstance(q, str) and q.strip()]


class StoreEngine(SearchEngine):
    """An engine whose index returns passage-store rows: subclasses set `self.store`
    and implement `search_rows`; this class skips empty queries and builds Documents."""

    store: Any

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


def build_index(corpus: str | Path | None, kind: str, out: str | Path, **params: Any) -> Path:
    """Build an index directory; see `search_envs.index.build_index`."""
    from search_envs.index import build_index as build

    return build(corpus, kind, out, **params)


def load_index(directory: str | Path, **params: Any) -> SearchEngine:
    """Open a built index; see `search_envs.index.load_index`."""
    from search_envs.index import load_index as load

    return load(directory, **params)


SEARCH_PARAMS = ("ef_search", "nprobe", "batch_size", "device", "encoder", "rrf_k", "fetch_k", "n_threads")


def cached_index_dir(kind: str, corpus: str | Path | None = None, **build_params: Any) -> Path:
    """Where `open_engine` keeps the index of (kind, corpus, build params):
    `cache_dir()/indexes/<kind>-<corpus sha256[:12]>[-<model>][-<params hash>]`."""
    from search_envs.corpus import file_sha256, resolve_corpus
    from search_envs.data import cache_dir
    from search_envs.engines.dense import DEFAULT_MODEL

    name = f"{kind}-{file_sha256(resolve_corpus(corpus))[:12]}"
    build_params = {k: v for k, v in build_params.items() if k not in ("show_progress", "overwrite")}
    if kind == "bm25":  # the scheme names the format too: an older index is never picked up
        from search_envs.engines.bm25 import DEFAULT_SCHEME

        name += "-" + str(build_params.pop("scheme", DEFAULT_SCHEME))
    else:
        model = build_params.pop("model", DEFAULT_MODEL)
        name += "-" + re.sub(r"[^A-Za-z0-9._-]+", "_", str(model).rstrip("/").split("/")[-1])
    if build_params:
        name += "-" + hashlib.sha256(json.dumps(build_params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return cache_dir() / "indexes" / name


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock so concurrent first uses build an index once (POSIX; elsewhere the atomic rename decides)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_engine(
    kind: str,
    corpus: str | Path | None = None,
    index_dir: str | Path | Sequence[str | Path] | None = None,
    **params: Any,
) -> SearchEngine:
    """A ready engine: kind is "bm25", "dense" or "hybrid".

    With `index_dir`, load it (hybrid: a directory holding bm25/ and dense/, or a
    pair of directories); a given `corpus` is checked against the index's hash.
    Without, build an index of `corpus` (None: the embedded Wikipedia sample)
    into the cache on first use and reuse it afterwards. Search-time params
    (ef_search, nprobe, batch_size, device, encoder, rrf_k, fetch_k) go to the
    engine, the rest (model, faiss, hnsw_m, nlist, pq_m, ...) to the build.
    """
    from search_envs.engines.hybrid import HybridEngine
    from search_envs.index import KINDS, check_index, load_index as load

    if kind not in KINDS:
        raise ValueError(f"unknown engine kind {kind!r}; choose one of {', '.join(KINDS)}")
    search_params = {k: v for k, v in params.items() if k in SEARCH_PARAMS}
    build_params = {k: v for k, v in params.items() if k not in SEARCH_PARAMS}
    if index_dir is not None and not isinstance(index_dir, (str, Path)):
        bm25_dir, dense_dir = index_dir
        if corpus is not None:
            check_index(bm25_dir, kind="bm25", corpus=corpus)  # from_dirs checks dense against bm25
        return HybridEngine.from_dirs(bm25_dir, dense_dir, **search_params)
    if index_dir is None and kind == "hybrid":
        # Fuse the cached BM25 and dense indexes: nothing is encoded twice.
        bm25_params = {k: v for k, v in build_params.items() if k in ("k1", "b", "scheme", "workers", "memory_mb")}
        dense_params = {k: v for k, v in build_params.items() if k not in bm25_params}
        return HybridEngine.from_dirs(
            _cached_build("bm25", corpus, bm25_params, search_params),
            _cached_build("dense", corpus, dense_params, search_params),
            **search_params,
        )
    if index_dir is None:
        index_dir = _cached_build(kind, corpus, build_params, search_params)
        corpus = None  # the cache name already pins the corpus hash
    return load(index_dir, corpus=corpus, kind=kind, **search_params)


def _cached_build(kind: str, corpus: str | Path | None, build_params: dict, search_params: dict) -> Path:
    """The cache directory of this index, built first if it is not there yet."""
    from search_envs.index import build_index as build

    index_dir = cached_index_dir(kind, corpus, **build_params)
    if not index_dir.is_dir():
        with _file_lock(index_dir.with_name(index_dir.name + ".lock")):
            if not index_dir.is_dir():
                if "encoder" in search_params:
                    build_params = {**build_params, "encoder": search_params["encoder"]}
                build(corpus, kind, index_dir, **build_params)
    return index_dir
