"""A retrieval server speaking Search-R1's protocol, with dynamic micro-batching.

    POST /retrieve  {"queries": ["q1", "q2"], "topk": 3, "return_scores": true}
    ->  {"result": [[{"document": {"id": "...", "contents": "\\"Title\\"\\ntext"}, "score": 1.2}, ...], ...]}

Without `return_scores` each result list holds the documents themselves. Search-R1,
ZeroSearch and verl's search tools post exactly this, so a trainer written for them
can point at `search-envs serve` unchanged, and `RemoteEngine` talks to either.

    POST /queries  {"queries": ["q1"], "k": 3}
    ->  {"queries": ["q1"], "answers": [["12\tTitle   text", ...]]}

is R1-Searcher's retriever (`train/wiki_corpus_load.py`): each answer is a corpus
line, `id<TAB>title   text` as its KILT corpus is written, whose leading id its
trainer strips. The default limits accept what these trainers send in one step
(Search-R1's GRPO: 512 questions x 5 rollouts = 2,560 queries in one request).

Slow or stuck clients cannot pile up: a client has `request_timeout_s` to send its
request headers and its body (then 408, or the connection is closed), and at most
`max_connections` connections are open at once (more are closed on arrival); each
such event is one log line.

Concurrent requests are merged: a batcher task collects queued requests (up to
`max_batch_size` queries, waiting at most `max_wait_ms` after the first) and sends
them to the engine as one `search` call per distinct topk, in a worker thread so the
event loop keeps accepting requests meanwhile. The engine sees one call at a time,
so it needs no thread safety.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import ClientDisconnect

from search_envs.engines.base import SearchEngine
from search_envs.types import Document

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """Request limits and batching knobs. Requests over a limit get a 4xx, never a crash.

    The defaults take a whole training step of the papers' trainers in one request (Search-R1
    at 512 x 5 rollouts, larger verl batches up to 16,384 queries) with queries as long as a
    500-token turn can make them; lower them for a server shared with untrusted clients.
    """

    max_queries: int = 16_384
    max_query_chars: int = 16_384
    max_body_bytes: int = 64 * 1024 * 1024
    max_topk: int = 100
    default_topk: int = 3
    max_batch_size: int = 256
    max_wait_ms: float = 0.0
    request_timeout_s: float = 10.0
    """Seconds a client has to send its request headers, and then its body."""
    max_connections: int = 1000
    """Open connections at once; more are closed as they arrive (bounds open files)."""

    def __post_init__(self) -> None:
        """Checked at start-up, so a bad setting fails `serve` instead of every request."""
        for name in ("max_queries", "max_query_chars", "max_body_bytes", "max_topk", "max_batch_size", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.default_topk <= self.max_topk:
            raise ValueError(f"the default topk must be between 1 and max_topk={self.max_topk}, got {self.default_topk}")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and request_timeout_s > 0")


class RetrieveRequest(BaseModel):
    """Search-R1's request body. Unknown fields are ignored, as Search-R1's server does."""

    model_config = ConfigDict(extra="ignore")

    queries: list[str]
    topk: int | None = None
    return_scores: bool = False


class QueriesRequest(BaseModel):
    """R1-Searcher's request body: `k` documents for each of `queries`."""

    model_config = ConfigDict(extra="ignore")

    queries: list[str]
    k: int | None = None


def document_json(doc: Document) -> dict[str, str]:
    """A document as Search-R1's corpus rows are: id and '"Title"\\ntext' contents."""
    return {"id": doc.id, "contents": doc.contents}


def corpus_line(doc: Document, rank: int) -> str:
    """A document as a line of R1-Searcher's KILT corpus (`split_kilt_to_100.py`):
    'id<TAB>title   text'. Its trainer strips a leading number, so a non-numeric id
    is replaced by the rank."""
    number = doc.id if doc.id.isdigit() else str(rank)
    return f"{number}\t{doc.title}   {doc.text}"


@dataclass
class _Job:
    queries: list[str]
    k: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Merges concurrent requests into few engine calls; the engine runs in one worker thread."""

    def __init__(self, engine: SearchEngine, max_batch_size: int, max_wait_ms: float) -> None:
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.batches = 0
        self.queries = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._worker.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    async def search(self, queries: list[str], k: int) -> list[list[Document]]:
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the request batcher is not running")
        job = _Job(queries, k, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        self._arrived.set()
        return await job.future

    async def _collect(self) -> list[_Job]:
        """The first queued job plus whatever else is queued (arriving within max_wait), up to
        max_batch_size queries. While the engine works on one batch the next one fills up,
        so batches grow with the load even when max_wait is 0."""
        assert self._queue is not None
        jobs = [await self._queue.get()]
        size = len(jobs[0].queries)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while size < self.max_batch_size:
            if not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                size += len(job.queries)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            # wait on an event, not on queue.get(): a get cancelled by the timeout could lose a job
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            by_k: dict[int, list[_Job]] = {}
            for job in jobs:
                if not job.future.cancelled():  # the client went away while queued
                    by_k.setdefault(job.k, []).append(job)
            for k, group in by_k.items():
                queries = [q for job in group for q in job.queries]
                self.batches += 1
                self.queries += len(queries)
                try:
                    results = await loop.run_in_executor(self._worker, self.engine.search, queries, k)
                    if len(results) != len(queries):
                        raise RuntimeError(f"engine returned {len(results)} result lists for {len(queries)} queries")
                except Exception as exc:  # the request fails with a 500; the server keeps serving
                    logger.exception("engine call failed")
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                start = 0
                for job in group:
                    n = len(job.queries)
                    if not job.future.done():
                        job.future.set_result(results[start : start + n])
                    start += n


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


async def _read_body(request: Request, max_bytes: int) -> bytes | None:
    """The request body, or None once it is over `max_bytes`."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            return None
    return bytes(body)


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "client"


def guarded_protocol(limits: ServerLimits) -> type:
    """uvicorn's h11 protocol, bounded: at most `max_connections` open connections (more
    are closed on arrival) and `request_timeout_s` to send the first request's headers.
    uvicorn itself waits forever for them; the body's deadline is the app's."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                logger.warning("%s: over %d open connections; closed it", self._who(), limits.max_connections)
                transport.close()
                return
            self._timer = self.loop.call_later(limits.request_timeout_s, self._headers_too_slow)

        def _who(self) -> str:
            return "%s:%d" % self.client if self.client else "client"

        def _headers_too_slow(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                logger.warning("%s: no request within %gs; closed the connection", self._who(), limits.request_timeout_s)
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol


def create_app(engine: SearchEngine, api_key: str | None = None, limits: ServerLimits = ServerLimits()) -> FastAPI:
    """The FastAPI app serving `engine`. With `api_key`, /retrieve and /queries need
    `Authorization: Bearer <key>`."""
    batcher = MicroBatcher(engine, limits.max_batch_size, limits.max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="search-envs retrieval server", lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "engine": engine.name, "queued": batcher.queued, "batches": batcher.batches}

    async def checked(request: Request, model: type[BaseModel]) -> BaseModel | JSONResponse:
        """The request body as `model`, or the 4xx response that says what is wrong with it."""
        if api_key is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
                return _error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                              {"WWW-Authenticate": "Bearer"})
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return _error(413, f"request body over {limits.max_body_bytes} bytes (the server's max_body_bytes)")
        try:
            body = await asyncio.wait_for(_read_body(request, limits.max_body_bytes), limits.request_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("%s: request body not received within %gs; answered 408", _client(request), limits.request_timeout_s)
            return _error(408, f"request body not received within {limits.request_timeout_s:g} seconds",
                          {"Connection": "close"})
        except ClientDisconnect:
            logger.info("%s: client went away while sending its request", _client(request))
            return Response(status_code=400)
        if body is None:
            return _error(413, f"request body over {limits.max_body_bytes} bytes (the server's max_body_bytes)")
        try:
            req = model.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
            )
            bad_json = any(e["type"] == "json_invalid" for e in exc.errors())
            return _error(400 if bad_json else 422, f"bad request: {problems}")
        queries = req.queries  # type: ignore[attr-defined]
        if len(queries) > limits.max_queries:
            return _error(413, f"at most {limits.max_queries} queries per request (the server's max_queries, "
                               f"--max-queries), got {len(queries)}")
        too_long = [i for i, q in enumerate(queries) if len(q) > limits.max_query_chars]
        if too_long:
            return _error(413, f"queries {too_long[:5]} are over {limits.max_query_chars} characters "
                               "(the server's max_query_chars, --max-query-chars)")
        return req

    async def search(queries: list[str], topk: int | None) -> list[list[Document]] | JSONResponse:
        k = topk or limits.default_topk  # Search-R1: a missing or 0 topk means the default
        if not 1 <= k <= limits.max_topk:
            return _error(422, f"topk must be between 1 and {limits.max_topk}, got {k}")
        if not queries:
            return []
        try:
            return await batcher.search(queries, k)
        except Exception as exc:
            return _error(500, f"search engine error: {type(exc).__name__}: {exc}"[:500])

    @app.post("/retrieve")
    async def retrieve(request: Request):
        req = await checked(request, RetrieveRequest)
        if isinstance(req, JSONResponse):
            return req
        results = await search(req.queries, req.topk)
        if isinstance(results, JSONResponse):
            return results
        if req.return_scores:
            return {"result": [[{"document": document_json(d), "score": float(d.score)} for d in docs]
                               for docs in results]}
        return {"result": [[document_json(d) for d in docs] for docs in results]}

    @app.post("/queries")
    async def queries(request: Request):
        req = await checked(request, QueriesRequest)
        if isinstance(req, JSONResponse):
            return req
        results = await search(req.queries, req.k)
        if isinstance(results, JSONResponse):
            return results
        return {"queries": req.queries,
                "answers": [[corpus_line(d, rank) for rank, d in enumerate(docs)] for docs in results]}

    return app


def serve(
    engine: SearchEngine,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    limits: ServerLimits = ServerLimits(),
    log_level: str = "info",
) -> None:
    """Serve `engine` until interrupted (blocking)."""
    import uvicorn

    uvicorn.run(create_app(engine, api_key, limits), host=host, port=port, log_level=log_level,
                backlog=4096, timeout_keep_alive=30, http=guarded_protocol(limits))


@contextlib.contextmanager
def running_server(
    engine: SearchEngine,
    api_key: str | None = None,
    limits: ServerLimits = ServerLimits(),
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """Serve `engine` from a background thread on a free port; yields the base URL.

    For tests, notebooks and benchmarks; the server stops when the block exits.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(engine, api_key, limits), log_level="warning", backlog=4096,
                            http=guarded_protocol(limits))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError("the retrieval server did not start")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
