"""RemoteEngine: a SearchEngine answered by a retrieval server over HTTP.

Speaks Search-R1's `/retrieve` protocol, so it works against `search-envs serve`
and against Search-R1's own `retrieval_server.py` (or any server copying it).
Documents come back as `{"id", "contents"}` with contents '"Title"\\ntext'.

Pass it to an environment as the engine, e.g.
`SearchEnv(RemoteEngine("http://127.0.0.1:8000"), tasks)` or
`search_envs.make_vec("SearchEnvs/WikiBM25-v0", 64, engine=RemoteEngine(url))`.

Several servers: `RemoteEngine(["http://a:8000", "http://b:8000"])` treats them as
replicas of one index (requests spread round-robin, a failing replica is skipped
at once and health-checked back in); `RemoteEngine(shards=["http://s0", "http://s1"])`
(or shards of replica lists) sends every query to each shard, which holds part of the
corpus, and merges the top-k by score.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from search_envs.corpus import split_contents
from search_envs.engines.base import SearchEngine, SearchFailure
from search_envs.types import Document, QueryContext


class RemoteEngineError(RuntimeError):
    """The server refused the request (4xx) or answered something unreadable: a setup
    problem to fix, so it is raised rather than shown to the agent."""


class _Unavailable(Exception):
    """Connection errors, timeouts or 5xx that outlasted the retries."""


def parse_document(item: Any, fallback_id: str) -> Document:
    """One result entry, with or without scores, as Search-R1's server returns it."""
    if not isinstance(item, dict):
        raise RemoteEngineError(f"expected a document object, got {type(item).__name__}")
    doc, score = (item["document"], item.get("score", 0.0)) if "document" in item else (item, 0.0)
    if not isinstance(doc, dict):
        raise RemoteEngineError(f"expected a document object, got {type(doc).__name__}")
    if "contents" in doc:
        title, text = split_contents(str(doc["contents"]))
    else:
        title, text = str(doc.get("title", "")), str(doc.get("text", ""))
    return Document(str(doc.get("id", fallback_id)), title, text, float(score or 0.0), doc.get("url"))


class _Replicas:
    """The servers holding one copy each of the same index: round-robin over the healthy
    ones, failover to the next on a connection error, timeout or 5xx, and a background
    health check (GET /health) that brings a failed server back once it answers."""

    def __init__(self, urls: Sequence[str], client: httpx.Client, retries: int, backoff: float,
                 health_interval: float) -> None:
        self.urls = [_retrieve_url(u) for u in urls]
        if not self.urls:
            raise ValueError("RemoteEngine needs at least one server URL")
        self.client, self.retries, self.backoff = client, retries, backoff
        self.health_interval = health_interval
        self.down: dict[str, float] = {}  # url -> when it failed
        self.sent = dict.fromkeys(self.urls, 0)  # requests answered, per server
        self._next = 0
        self._lock = threading.Lock()
        self._checker: threading.Thread | None = None
        self._closed = threading.Event()

    def order(self) -> list[str]:
        """Healthy servers first, starting at the round-robin position, then the failed ones."""
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.urls)
            rotated = self.urls[start:] + self.urls[:start]
            return [u for u in rotated if u not in self.down] + sorted(
                (u for u in rotated if u in self.down), key=self.down.__getitem__)

    def post(self, payload: dict[str, Any]) -> Any:
        last: Exception | None = None
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            for url in self.order():
                attempts += 1
                try:
                    response = self.client.post(url, json=payload)
                except httpx.TransportError as exc:  # connect/read errors and timeouts: next server
                    last = exc
                    self._mark_down(url)
                    continue
                if response.status_code >= 500:
                    last = RemoteEngineError(f"{url} answered {response.status_code}: {response.text[:300]}")
                    self._mark_down(url)
                    continue
                if response.status_code >= 400:
                    raise RemoteEngineError(f"{url} refused the request ({response.status_code}): {response.text[:300]}")
                try:
                    body = response.json()
                except ValueError as exc:
                    raise RemoteEngineError(f"{url} answered invalid JSON: {exc}") from exc
                with self._lock:
                    self.down.pop(url, None)
                    self.sent[url] += 1
                return body
        where = self.urls[0] if len(self.urls) == 1 else f"all {len(self.urls)} replicas ({', '.join(self.urls)})"
        raise _Unavailable(f"{where} failed after {attempts} attempts: {str(last)[:200]}") from last

    def _mark_down(self, url: str) -> None:
        with self._lock:
            self.down.setdefault(url, time.monotonic())
            if len(self.urls) > 1 and (self._checker is None or not self._checker.is_alive()) and not self._closed.is_set():
                self._checker = threading.Thread(target=self._check_loop, daemon=True, name="remote-health")
                self._checker.start()

    def check(self, timeout: float = 2.0) -> dict[str, bool]:
        """GET /health on every server now; updates which ones are used. url -> healthy."""
        status = {}
        for url in self.urls:
            try:
                ok = self.client.get(url.removesuffix("/retrieve") + "/health", timeout=timeout).status_code == 200
            except httpx.TransportError:
                ok = False
            status[url] = ok
            with self._lock:
                if ok:
                    self.down.pop(url, None)
                else:
                    self.down.setdefault(url, time.monotonic())
        return status

    def _check_loop(self) -> None:
        """While some server is marked down, probe the down ones every `health_interval` seconds."""
        while not self._closed.wait(self.health_interval):
            with self._lock:
                down = list(self.down)
            if not down:
                return
            for url in down:
                try:
                    ok = self.client.get(url.removesuffix("/retrieve") + "/health", timeout=2.0).status_code == 200
                except httpx.TransportError:
                    ok = False
                if ok:
                    with self._lock:
                        self.down.pop(url, None)

    def close(self) -> None:
        self._closed.set()


def _retrieve_url(url: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"RemoteEngine needs an http(s) URL, got {url!r}")
    url = url.rstrip("/")
    return url if url.endswith("/retrieve") else url + "/retrieve"


class RemoteEngine(SearchEngine):
    """Search through Search-R1-protocol retrieval servers.

    Args:
        url: the server's base URL (`http://host:8000`) or its `/retrieve` URL; or a list
            of URLs of replicas serving the same index.
        shards: instead of `url`, servers each holding part of the corpus: a list whose
            items are a URL or a list of replica URLs. Every query goes to every shard
            (concurrently) and the top-k are merged by score, ties by shard order then
            rank. Exact for dense Flat shards; BM25 shards score with their own IDF.
        api_key: sent as `Authorization: Bearer <key>`.
        timeout: seconds per HTTP attempt (connect, read, write, pool).
        retries: extra rounds over all replicas after every one failed with a connection
            error, a timeout or a 5xx, with exponential backoff starting at `backoff` seconds.
        health_interval: how often failed replicas are probed (GET /health) to bring them back.
        max_connections: size of the connection pool (shared by all threads and servers).
        max_queries_per_request: larger batches are split into several requests.

    A failing replica is skipped at once (the request goes to the next one, nothing is
    lost). When every replica of a shard stays unreachable or keeps answering 5xx after the
    retries, each query gets a `SearchFailure` (an empty result that tells the agent why),
    as web engines do; a 4xx (wrong API key, request over the server's limits) raises
    `RemoteEngineError`. The client is thread-safe; `AsyncSearchVectorEnv` calls it from
    many threads.
    """

    name = "remote"

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_connections: int = 64,
        max_queries_per_request: int = 512,
        shards: Sequence[str | Sequence[str]] | None = None,
        health_interval: float = 2.0,
    ) -> None:
        if (url is None) == (shards is None):
            raise ValueError("RemoteEngine takes either url (one server or a list of replicas) or shards")
        groups = [[url] if isinstance(url, str) else list(url)] if url is not None else [
            [shard] if isinstance(shard, str) else list(shard) for shard in shards]
        if not groups or any(not g for g in groups):
            raise ValueError("RemoteEngine needs at least one server URL per shard")
        self.max_queries_per_request = max(1, int(max_queries_per_request))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers=headers,
        )
        self.shards = [_Replicas(g, self._client, max(0, int(retries)), backoff, health_interval) for g in groups]
        self.url = self.shards[0].urls[0]
        self._pool = ThreadPoolExecutor(len(self.shards), thread_name_prefix="shard") if len(self.shards) > 1 else None

    def search(
        self,
        queries: Sequence[str],
        k: int,
        contexts: Sequence[QueryContext] | None = None,
    ) -> list[list[Document]]:
        out: list[list[Document]] = [[] for _ in queries]
        wanted = [i for i, q in enumerate(queries) if q and q.strip()]
        step = self.max_queries_per_request
        for start in range(0, len(wanted), step):
            chunk = wanted[start : start + step]
            batch = [queries[i] for i in chunk]
            try:
                if self._pool is None:
                    results = self._retrieve(self.shards[0], batch, k)
                else:
                    per_shard = list(self._pool.map(lambda shard: self._retrieve(shard, batch, k), self.shards))
                    results = [merge_ranked([r[qi] for r in per_shard], k) for qi in range(len(batch))]
                for i, docs in zip(chunk, results):
                    out[i] = docs[:k]
            except _Unavailable as exc:  # the agent is told, the batch survives
                for i in chunk:
                    out[i] = SearchFailure(f"the retrieval server is unavailable ({exc})")
        return out

    def _retrieve(self, shard: _Replicas, queries: list[str], k: int) -> list[list[Document]]:
        body = shard.post({"queries": queries, "topk": k, "return_scores": True})
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, list) or len(result) != len(queries):
            raise RemoteEngineError(
                f"{shard.urls[0]} answered {type(result).__name__} instead of {len(queries)} result lists"
            )
        return [
            [parse_document(item, f"{qi}-{di}") for di, item in enumerate(row or [])]
            for qi, row in enumerate(result)
        ]

    def health(self) -> dict[str, bool]:
        """Probe every server now (GET /health); url -> healthy. Failed ones are skipped until they answer."""
        return {url: ok for shard in self.shards for url, ok in shard.check().items()}

    def close(self) -> None:
        for shard in self.shards:
            shard.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._client.close()

    def __repr__(self) -> str:
        urls = [shard.urls for shard in self.shards]
        return f"RemoteEngine({self.url!r})" if urls == [[self.url]] else f"RemoteEngine(shards={urls!r})"


def merge_ranked(lists: Sequence[Sequence[Document]], k: int) -> list[Document]:
    """The top k of several best-first result lists by score; heapq.merge is stable, so
    ties go to the earlier list, then to the better rank."""
    return list(itertools.islice(heapq.merge(*lists, key=lambda d: -d.score), k))
