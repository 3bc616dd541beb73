"""The obvious alternative our BM25 engine is timed against: plain bm25s, built on the
same passages with the same k1/b (its own tokenizer and Snowball stems)."""

from __future__ import annotations

from collections.abc import Callable

import bm25s
import Stemmer


def raw_bm25s(engine) -> Callable[[list[str], int], object]:
    """A `retrieve(queries, k)` of bm25s over `engine`'s passage store."""
    store = engine.store
    texts = [f"{p.title}\n{p.text}" for p in store.get_many(range(len(store)))]
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=engine.manifest["k1"], b=engine.manifest["b"], method="lucene")
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)

    def retrieve(queries: list[str], k: int):
        return retriever.retrieve(bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False), k=k,
                                  show_progress=False)

    return retrieve
