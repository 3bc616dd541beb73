"""Episodes of one env configuration sharing one engine inside a verl worker.

verl builds a new agent-loop object for every sample, and runs hundreds of them as
coroutines of one event loop per worker. Building an env per episode would build an
index (or a retrieval client, or an LLM simulator) per episode; instead, each worker
process keeps one prototype env per (env id, kwargs) with its engine built once, and
every episode is a shallow copy of it (same engine, tasks, protocol, reward, schedule;
its own episode state). The searches of concurrent episodes are gathered by a
`SearchBatcher` into one engine call, as `SearchVectorEnv` does for a vector env.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym

import search_envs  # noqa: F401  (registers the env ids)
from search_envs.env import SearchEnv, SearchRequest
from search_envs.vector import search_error_message, unanswered


class SearchBatcher:
    """Answers the search requests of concurrent episodes, batched.

    Requests that arrive within `window` seconds of each other go to the engine in one
    `search` call per distinct k, run in a thread so the event loop keeps generating.
    A call that has not answered within `timeout` seconds, or that raises, answers
    each of its requests with `unanswered` SearchFailures (the env turns them into an
    error observation), as the vector env does; the episode goes on instead of hanging.
    """

    def __init__(self, engine, timeout: float = 60.0, window: float = 0.002, max_threads: int = 4) -> None:
        if timeout <= 0 or window < 0:
            raise ValueError("timeout must be > 0 and window >= 0")
        self.engine, self.timeout, self.window = engine, timeout, window
        self.engine_calls = 0
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="search-envs-verl")
        self._pending: list[tuple[SearchRequest, asyncio.Future]] = []
        self._flushing = False

    async def search(self, request: SearchRequest) -> list:
        """The request's results: one list per query (SearchFailures when it could not be answered)."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if not self._flushing:
            self._flushing = True
            asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.window)  # let the other episodes' searches join this batch
        batch, self._pending, self._flushing = self._pending, [], False
        by_k: dict[int, list[tuple[SearchRequest, asyncio.Future]]] = {}
        for request, future in batch:
            by_k.setdefault(request.k, []).append((request, future))
        await asyncio.gather(*(self._call(k, members) for k, members in by_k.items()))

    async def _call(self, k: int, members: list[tuple[SearchRequest, asyncio.Future]]) -> None:
        queries = [q for request, _ in members for q in request.queries]
        contexts = [c for request, _ in members for c in request.contexts]
        self.engine_calls += 1
        loop = asyncio.get_running_loop()
        try:
            results = await asyncio.wait_for(
                loop.run_in_executor(self._pool, self.engine.search, queries, k, contexts), self.timeout
            )
            if len(results) != len(queries):
                raise RuntimeError(f"engine returned {len(results)} result lists for {len(queries)} queries")
        except asyncio.TimeoutError:
            message = f"the search did not answer within {self.timeout:g} seconds; try again"
            answers: list[Any] = [unanswered(request, message) for request, _ in members]
        except Exception as exc:  # one failing call must not end the episodes
            answers = [unanswered(request, search_error_message(exc)) for request, _ in members]
        else:
            answers, start = [], 0
            for request, _ in members:
                answers.append(results[start : start + len(request.queries)])
                start += len(request.queries)
        for (_, future), answer in zip(members, answers):
            if not future.done():
                future.set_result(answer)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class SharedEnv:
    """One env configuration in this process: a prototype env with its engine, copied per episode."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], search_timeout: float = 60.0) -> None:
        self.env_id, self.env_kwargs, self.search_timeout = env_id, dict(env_kwargs), search_timeout
        proto = gym.make(env_id, **self.env_kwargs).unwrapped
        if not isinstance(proto, SearchEnv):
            raise TypeError(f"{env_id} is not a search_envs SearchEnv (got {type(proto).__name__})")
        self.prototype = proto
        self._engine_lock = threading.Lock()
        self._batchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def engine(self):
        """The engine, built on first use (once, whichever episode asks first)."""
        with self._engine_lock:
            return self.prototype.engine

    async def new_episode(self) -> SearchEnv:
        """A fresh env for one episode, sharing the prototype's engine and task set."""
        await asyncio.get_running_loop().run_in_executor(None, self.engine)
        return self.prototype.sibling()

    def batcher(self) -> SearchBatcher:
        """The batcher of the running event loop (verl runs one loop per worker)."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = SearchBatcher(self.prototype.engine, timeout=self.search_timeout)
        return batcher

    async def step(self, env: SearchEnv, action: str):
        """`env.step(action)`, its search batched with the other episodes' and never blocking the loop."""
        request = env.begin_step(action)
        if request is None:  # answers, invalid actions, browsing (a page fetch: off the loop)
            return await asyncio.get_running_loop().run_in_executor(None, env.end_step, None)
        return env.end_step(await self.batcher().search(request))


_SHARED: dict[tuple[str, str, float], SharedEnv] = {}
_SHARED_LOCK = threading.Lock()


def shared_env(env_id: str, env_kwargs: dict[str, Any] | None = None, search_timeout: float = 60.0) -> SharedEnv:
    """This process's `SharedEnv` for the configuration (created on first use)."""
    env_kwargs = dict(env_kwargs or {})
    key = (env_id, json.dumps(env_kwargs, sort_keys=True, default=str), float(search_timeout))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = SharedEnv(env_id, env_kwargs, search_timeout)
        return _SHARED[key]
