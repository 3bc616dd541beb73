"""Search engines behind one batched interface.

`open_engine(spec)` is the one place that turns an engine spec ("bm25", "dense",
"hybrid", a retrieval server URL, or a ready `SearchEngine`) into an engine; it and
the index functions live in `search_envs.index` and are re-exported here.
"""

from search_envs.engines.base import SearchEngine, SearchFailure
from search_envs.engines.store import StoreEngine, live_queries
from search_envs.index import build_index, cached_index_dir, load_index, open_engine

__all__ = [
    "SearchEngine",
    "SearchFailure",
    "StoreEngine",
    "build_index",
    "cached_index_dir",
    "live_queries",
    "load_index",
    "open_engine",
]
