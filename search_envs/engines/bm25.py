"""BM25 over a passage store, on bm25s (Snowball stemming, English stop words).

The bm25s index is built once, saved in the index directory, and loaded
memory-mapped, so many server workers share the same pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import scipy.sparse
import Stemmer

from search_envs.corpus import PassageStore
from search_envs.engines import StoreEngine

SUBDIR = "bm25"
STOPWORDS = "en"
LANGUAGE = "english"


def tokenize(texts: list[str], stemmer: Any, show_progress: bool = False) -> list[list[str]]:
    """The one tokenizer used for passages and queries (they must match)."""
    return bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=stemmer, return_ids=False, show_progress=show_progress)


class BM25Engine(StoreEngine):
    name = "bm25"
    build_params = ("k1", "b", "method")
    load_params = ("n_threads",)

    def __init__(self, directory: str | Path, manifest: dict[str, Any] | None = None, n_threads: int = 0):
        directory = Path(directory)
        self.directory = directory
        self.manifest = manifest or {}
        self.n_threads = n_threads
        self.stemmer = Stemmer.Stemmer(self.manifest.get("stemmer", LANGUAGE))
        self.retriever = bm25s.BM25.load(str(directory / SUBDIR), mmap=True, show_progress=False)
        self.store = PassageStore(directory)
        self._matrix: scipy.sparse.csr_matrix | None = None
        num_docs = int(self.retriever.scores["num_docs"])
        if num_docs != len(self.store):
            raise ValueError(f"bm25 index has {num_docs} documents but the passage store has {len(self.store)}")

    @staticmethod
    def build(directory: Path, k1: float = 1.5, b: float = 0.75, method: str = "lucene", show_progress: bool = True) -> dict[str, Any]:
        """Index the store in `directory`; returns the manifest fields of this engine."""
        store = PassageStore(directory)
        texts = [f"{p.title}\n{p.text}" for p in store.get_many(range(len(store)))]
        store.close()
        retriever = bm25s.BM25(k1=k1, b=b, method=method)
        retriever.index(tokenize(texts, Stemmer.Stemmer(LANGUAGE), show_progress), show_progress=show_progress)
        retriever.save(str(directory / SUBDIR), show_progress=False)
        return {"engine": "bm25s", "bm25s_version": bm25s.__version__, "stemmer": LANGUAGE, "stopwords": STOPWORDS,
                "k1": k1, "b": b, "method": method}

    def search_rows(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) for a batch; a row of -1 marks no result (a query with no known term).

        bm25s's numpy backend scores and ranks query by query: a dense score vector and an
        argpartition over the whole corpus each. Here the batch is one sparse product
        (queries x vocabulary) @ (vocabulary x passages) and each query's top k is taken
        among the passages it matches: the same scores, much less work per query, and the
        more queries per call (vector envs, the server) the cheaper each one.
        """
        if getattr(self.retriever, "nonoccurrence_array", None) is not None:  # bm25l/bm25+: every passage scores
            result = self.retriever.retrieve(
                tokenize(list(queries), self.stemmer), k=k, show_progress=False, n_threads=self.n_threads
            )
            rows, scores = np.asarray(result.documents), np.asarray(result.scores)
            return np.where(scores > 0, rows, -1), scores
        vocab = self.retriever.vocab_dict
        qi, ti = [], []
        for i, tokens in enumerate(tokenize(list(queries), self.stemmer)):
            for token in tokens:
                j = vocab.get(token)
                if j is not None:
                    qi.append(i)
                    ti.append(j)
        matrix = self._term_matrix()
        q = scipy.sparse.csr_matrix((np.ones(len(qi), dtype=matrix.dtype), (qi, ti)), shape=(len(queries), matrix.shape[0]))
        scores = (q @ matrix).tocsr()  # repeated query terms count twice, as in bm25s
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.zeros((len(queries), k), dtype=np.float32)
        for i in range(len(queries)):
            lo, hi = scores.indptr[i], scores.indptr[i + 1]
            data, docs = scores.data[lo:hi], scores.indices[lo:hi]
            top = np.argpartition(-data, k - 1)[:k] if len(data) > k else np.arange(len(data))
            top = top[np.argsort(-data[top], kind="stable")]
            top = top[data[top] > 0]
            out_rows[i, : len(top)], out_scores[i, : len(top)] = docs[top], data[top]
        return out_rows, out_scores

    def _term_matrix(self) -> scipy.sparse.csr_matrix:
        """bm25s's score matrix (vocabulary x passages, memory-mapped) as a scipy CSR matrix."""
        if self._matrix is None:
            s = self.retriever.scores
            shape = (len(s["indptr"]) - 1, int(s["num_docs"]))
            self._matrix = scipy.sparse.csr_matrix((s["data"], s["indices"], s["indptr"]), shape=shape, copy=False)
        return self._matrix
