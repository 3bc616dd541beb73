"""The one interface every search engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from search_envs.types import Document, QueryContext


class SearchFailure(list):
    """An empty result list that says why the search failed (`error`): the one
    way a search error reaches the environment.

    Engines that can fail per query (web, LLM simulator, remote) return it in place
    of that query's results, so the rest of the batch survives and the agent is
    told what went wrong instead of seeing "No results found." A vector env whose
    engine call raised or missed its deadline gives each query of that call one with
    `unanswered=True`: nothing was searched, so the step counts no search and the
    agent gets the protocol's error observation.
    """

    def __init__(self, error: str, unanswered: bool = False) -> None:
        super().__init__()
        self.error = error
        self.unanswered = unanswered

    def __repr__(self) -> str:
        return f"SearchFailure({self.error!r})"


class SearchEngine(ABC):
    """Batched search: one call answers many queries, so vector envs and servers
    can amortise model and index work across episodes.

    Implementations must return exactly one list per query, in order, each with
    at most `k` documents, best first. An empty or whitespace-only query gets an
    empty list (never an exception), so one bad query cannot sink a batch.
    """

    name: str = "engine"

    @abstractmethod
    def search(
        self,
        queries: Sequence[str],
        k: int,
        contexts: Sequence[QueryContext] | None = None,
    ) -> list[list[Document]]:
        """Return the top-`k` documents for each query.

        `contexts`, when given, has one entry per query; engines that do not
        need it ignore it.
        """

    def search_one(self, query: str, k: int, context: QueryContext | None = None) -> list[Document]:
        return self.search([query], k, None if context is None else [context])[0]

    def close(self) -> None:
        """Release files, sockets or models. Safe to call twice."""
