"""ZeroSearch's useful/noisy contract without an LLM: noise drawn from a real corpus.

A useful search returns the base engine's top-k. A noisy one returns passages
that the same query retrieves at deep ranks (related to the query, so not
trivially off-topic) and that do not contain any gold answer under the
normalised-answer check of `search_envs.rewards`. It runs noise curricula on CPU
at retrieval speed, so a curriculum can be tested or tuned before paying for a
simulator LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search_envs.engines.base import SearchEngine
from search_envs.rewards import substring_match
from search_envs.types import Document, QueryContext


def contains_answer(doc: Document, answers: Sequence[str]) -> bool:
    """Whether a normalised gold answer occurs in the document's title or text."""
    return bool(answers) and substring_match(f"{doc.title} {doc.text}", answers) > 0


class CorpusNoiseEngine(SearchEngine):
    """Useful = the base engine's top-k; noisy = answer-free passages from deep ranks.

    Args:
        base: the retrieval engine (BM25, dense, ...) or a kind for `open_engine`.
        depth: how many results to fetch for a noisy query.
        noise_start_rank: noisy passages come from ranks >= this (0-based) first;
            shallower answer-free passages fill in when the deep ones run out.
            A noisy result may hold fewer than k passages, never one with the answer.
        engine_kwargs: for `open_engine` when `base` is a kind (corpus, index_dir, ...).
    """

    name = "corpus_noise"

    def __init__(
        self, base: SearchEngine | str = "bm25", depth: int = 50, noise_start_rank: int = 10, **engine_kwargs: Any
    ) -> None:
        if depth < 1 or noise_start_rank < 0:
            raise ValueError("need depth >= 1 and noise_start_rank >= 0")
        if isinstance(base, str):
            from search_envs.engines import open_engine

            base = open_engine(base, **engine_kwargs)
        elif engine_kwargs:
            raise ValueError("engine options given with a ready base engine")
        self.base = base
        self.depth = depth
        self.noise_start_rank = noise_start_rank
        self.stats = {"useful": 0, "noisy": 0, "noisy_short": 0}

    def search(
        self, queries: Sequence[str], k: int, contexts: Sequence[QueryContext] | None = None
    ) -> list[list[Document]]:
        if contexts is not None and len(contexts) != len(queries):
            raise ValueError(f"got {len(contexts)} contexts for {len(queries)} queries")
        results: list[list[Document]] = [[] for _ in queries]
        if k < 1 or not queries:
            return results
        noisy = [i for i in range(len(queries)) if contexts is not None and contexts[i].noisy]
        useful = [i for i in range(len(queries)) if contexts is None or not contexts[i].noisy]
        if useful:
            for i, docs in zip(useful, self.base.search([queries[i] for i in useful], k)):
                results[i] = docs
            self.stats["useful"] += len(useful)
        if noisy:
            fetched = self.base.search([queries[i] for i in noisy], max(self.depth, self.noise_start_rank + k))
            for i, docs in zip(noisy, fetched):
                results[i] = self._noise(docs, contexts[i].answers, k)  # type: ignore[index]
                self.stats["noisy_short"] += len(results[i]) < k
            self.stats["noisy"] += len(noisy)
        return results

    def _noise(self, ranked: list[Document], answers: Sequence[str], k: int) -> list[Document]:
        clean = [(rank, d) for rank, d in enumerate(ranked) if not contains_answer(d, answers)]
        deep = [d for rank, d in clean if rank >= self.noise_start_rank]
        shallow = [d for rank, d in reversed(clean) if rank < self.noise_start_rank]  # deepest first
        return (deep + shallow)[:k]

    def close(self) -> None:
        self.base.close()

