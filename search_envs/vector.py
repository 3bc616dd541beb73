"""Vector environments: many SearchEnv episodes stepped together, one engine call per step.

`SearchVectorEnv.step` parses every action (`SearchEnv.begin_step`), sends all the
queries of the step to the shared engine in one batched `search` call per distinct
`top_k` (one call when all sub-envs use the same k, the usual case), and hands each
sub-env its own slice of the results (`SearchEnv.end_step`). A BM25 or dense engine
answers a batch of 64 queries far faster than 64 calls of one query each.

`AsyncSearchVectorEnv` is for engines whose time goes into waiting on a network
(a remote retrieval server, an LLM simulator, web search): it sends each sub-env's
search as its own request from a thread pool, at most `max_in_flight` at a time, and
gives up on any that has not answered within `step_timeout` seconds; that sub-env
gets an error observation and the step still returns.

Both follow Gymnasium 1.x's vector API with `AutoresetMode.NEXT_STEP`: the step
after an episode ends resets that sub-env (reward 0, not terminated, not truncated,
the reset observation and info) and ignores its action.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium import spaces

from search_envs.engines.base import SearchEngine, SearchFailure
from search_envs.env import SearchEnv, SearchRequest
from search_envs.types import Document

logger = logging.getLogger(__name__)

Results = list[list[Document]]


class SearchVectorEnv(gym.vector.VectorEnv):
    """`num_envs` SearchEnvs sharing one engine, their searches batched into one call per step.

    Args:
        envs: the sub-environments (SearchEnv, or Gymnasium wrappers around one),
            or zero-argument factories returning them.
        engine: the engine every sub-env searches with. None: the first sub-env's
            engine (built lazily on the first search, then shared).

    Observations are a tuple of str; actions any sequence of `num_envs` str.
    Rewards, terminations and truncations are numpy arrays; infos are merged the
    Gymnasium way (each key an array over sub-envs plus a `_key` mask).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        envs: Iterable[gym.Env | Callable[[], gym.Env]],
        engine: SearchEngine | None = None,
    ) -> None:
        built = [e if isinstance(e, gym.Env) else e() for e in envs]
        if not built:
            raise ValueError("a vector environment needs at least one sub-environment")
        self.envs: list[SearchEnv] = []
        for env in built:
            base = env.unwrapped
            if not isinstance(base, SearchEnv):
                raise TypeError(f"sub-environments must be SearchEnv, got {type(base).__name__}")
            refuse_wrappers(env)
            self.envs.append(base)
        self._engine = engine
        self.num_envs = len(self.envs)
        self.autoreset_mode = AutoresetMode.NEXT_STEP
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        # batch_space would deep-copy the text space once per env (slow for hundreds of envs)
        self.observation_space = spaces.Tuple([self.single_observation_space] * self.num_envs)
        self.action_space = spaces.Tuple([self.single_action_space] * self.num_envs)
        self.spec = getattr(built[0], "spec", None)
        self.render_mode = None
        self._observations: list[str] = [""] * self.num_envs
        self._autoreset = np.zeros(self.num_envs, dtype=np.bool_)
        self.engine_calls = 0

    # -- engine -----------------------------------------------------------------------
    @property
    def engine(self) -> SearchEngine:
        """The shared engine; built from the first sub-env on first use."""
        if self._engine is None:
            self._engine = self.envs[0].engine
        return self._engine

    # -- Gymnasium vector API -----------------------------------------------------------
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Reset sub-envs; an int seed gives sub-env i the seed `seed + i`.

        `options["reset_mask"]` (bool array) resets only the masked sub-envs; the
        other options go to every reset sub-env's `reset`.
        """
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} environments")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=np.bool_)
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},)")
        env_infos: list[dict[str, Any]] = [{}] * self.num_envs
        for i in np.flatnonzero(mask):
            self._observations[i], env_infos[i] = self.envs[i].reset(seed=seeds[i], options=options or None)
        self._autoreset[mask] = False
        return tuple(self._observations), merge_infos(env_infos, self.num_envs)

    def step(self, actions: Sequence[str]):
        actions = list(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"got {len(actions)} actions for {self.num_envs} environments")
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        env_infos: list[dict[str, Any]] = [{}] * self.num_envs

        requests: dict[int, SearchRequest] = {}
        stepping: list[int] = []
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:
                self._observations[i], env_infos[i] = env.reset()
                continue
            stepping.append(i)
            request = env.begin_step(actions[i])
            if request is not None:
                requests[i] = request

        answers = self._search(requests) if requests else {}
        for i in stepping:
            obs, rewards[i], terminations[i], truncations[i], env_infos[i] = self.envs[i].end_step(answers.get(i))
            self._observations[i] = obs
        infos = merge_infos(env_infos, self.num_envs)
        self._autoreset = terminations | truncations
        return tuple(self._observations), rewards, terminations, truncations, infos

    def _search(self, requests: dict[int, SearchRequest]) -> dict[int, Results]:
        """Answer every sub-env's request: one engine call per distinct k.

        Returns each sub-env's results; a failed call gives its queries `unanswered` failures.
        """
        by_k: dict[int, list[int]] = {}
        for i, request in requests.items():
            by_k.setdefault(request.k, []).append(i)
        answers: dict[int, Results] = {}
        for k, members in by_k.items():
            queries = [q for i in members for q in requests[i].queries]
            contexts = [c for i in members for c in requests[i].contexts]
            self.engine_calls += 1
            try:
                results = self.engine.search(queries, k, contexts)
                if len(results) != len(queries):
                    raise RuntimeError(f"engine returned {len(results)} result lists for {len(queries)} queries")
            except Exception as exc:  # one failing call must not crash the whole batch of episodes
                logger.warning("search engine call failed: %s", exc)
                for i in members:
                    answers[i] = unanswered(requests[i], search_error_message(exc))
                continue
            start = 0
            for i in members:
                n = len(requests[i].queries)
                answers[i] = results[start : start + n]
                start += n
        return answers

    # -- helpers shared with SyncVectorEnv ------------------------------------------------
    def set_progress(self, progress: float) -> None:
        """Training progress for the noise curriculum, forwarded to every sub-env."""
        for env in self.envs:
            env.set_progress(progress)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method (or read an attribute) on every sub-env."""
        out = []
        for env in self.envs:
            attr = getattr(env, name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(out)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return tuple(getattr(env, name) for env in self.envs)

    def set_attr(self, name: str, values: Any) -> None:
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"got {len(values)} values for {self.num_envs} environments")
        for env, value in zip(self.envs, values):
            setattr(env, name, value)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
        if self._engine is not None:
            self._engine.close()


# Wrappers `gym.make` adds that only check API use: skipping them changes no data.
CHECKING_WRAPPERS = (gym.wrappers.PassiveEnvChecker, gym.wrappers.OrderEnforcing)


def refuse_wrappers(env: gym.Env) -> None:
    """Raise if `env` has a wrapper that a batched step would skip.

    A vector env steps each SearchEnv directly (`begin_step`/`end_step`), so
    observation, reward or action wrappers on a sub-env would silently not apply.
    """
    while isinstance(env, gym.Wrapper):
        if not isinstance(env, CHECKING_WRAPPERS):
            raise ValueError(
                f"sub-environment wrapper {type(env).__name__} would be skipped: a SearchVectorEnv steps the "
                "SearchEnv inside each sub-env directly, to batch their searches. Wrap the vector env instead "
                "(gymnasium.wrappers.vector), or use gymnasium.make_vec(..., vectorization_mode='sync', wrappers=[...])"
            )
        env = env.env


def merge_infos(env_infos: Sequence[dict[str, Any]], num_envs: int) -> dict[str, Any]:
    """Gymnasium's vector info layout (what `VectorEnv._add_info` builds env by env),
    built key by key: one array per key plus its `_key` mask, nested dicts recursively.
    One pass over the infos gathers each key's (env index, value) column."""
    columns: dict[str, tuple[list[int], list[Any]]] = {}
    for i, info in enumerate(env_infos):
        for key, value in info.items():
            column = columns.get(key)
            if column is None:
                columns[key] = column = ([], [])
            column[0].append(i)
            column[1].append(value)
    merged: dict[str, Any] = {}
    for key, (present, values) in columns.items():
        first = values[0]
        if isinstance(first, dict):
            nested: list[dict[str, Any]] = [{}] * num_envs
            for i, v in zip(present, values):
                nested[i] = v
            value: Any = merge_infos(nested, num_envs)
        elif type(first) in (int, float, bool) or isinstance(first, np.number):
            value = np.zeros(num_envs, dtype=type(first))
            value[present] = values
        elif isinstance(first, np.ndarray):
            value = np.zeros((num_envs, *first.shape), dtype=first.dtype)
            for i, v in zip(present, values):
                value[i] = v
        else:
            value = np.full(num_envs, None, dtype=object)
            for i, v in zip(present, values):
                value[i] = v
        mask = np.zeros(num_envs, dtype=np.bool_)
        mask[present] = True
        merged[key], merged[f"_{key}"] = value, mask
    return merged


def unanswered(request: SearchRequest, message: str) -> Results:
    """The results of a request whose engine call failed: one `unanswered` failure per query."""
    return [SearchFailure(message, unanswered=True) for _ in request.queries]


def search_error_message(exc: BaseException) -> str:
    """What the agent reads when its search could not be answered."""
    detail = str(exc).strip() or type(exc).__name__
    return f"the search engine failed ({detail[:200]}); try again"


class AsyncSearchVectorEnv(SearchVectorEnv):
    """A vector env whose sub-env searches run concurrently, for network-bound engines.

    Each sub-env's search is its own engine call, run in a thread pool with at most
    `max_in_flight` calls at a time. A call that has not answered `step_timeout`
    seconds after the step began is abandoned: that sub-env's observation says the
    search timed out, and the step returns. The engine must be thread-safe
    (`RemoteEngine` is; abandoned calls finish in the background, bounded by the
    engine's own timeout).
    """

    def __init__(
        self,
        envs: Iterable[gym.Env | Callable[[], gym.Env]],
        engine: SearchEngine | None = None,
        max_in_flight: int = 16,
        step_timeout: float = 30.0,
    ) -> None:
        if max_in_flight < 1 or step_timeout <= 0:
            raise ValueError("max_in_flight must be >= 1 and step_timeout > 0")
        super().__init__(envs, engine)
        self.max_in_flight = max_in_flight
        self.step_timeout = step_timeout
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="search")

    def _search(self, requests: dict[int, SearchRequest]) -> dict[int, Results]:
        engine = self.engine
        deadline = time.monotonic() + self.step_timeout
        futures: dict[Future, int] = {}
        for i, request in requests.items():
            futures[self._pool.submit(engine.search, request.queries, request.k, request.contexts)] = i
            self.engine_calls += 1
        answers: dict[int, Results] = {}
        pending = set(futures)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                i = futures[future]
                try:
                    results = future.result()
                    if len(results) != len(requests[i].queries):
                        raise RuntimeError("engine returned the wrong number of result lists")
                    answers[i] = results
                except Exception as exc:
                    logger.warning("search for sub-env %d failed: %s", i, exc)
                    answers[i] = unanswered(requests[i], search_error_message(exc))
        for future in pending:
            future.cancel()  # not started yet: never runs; running: its result is dropped
            i = futures[future]
            answers[i] = unanswered(requests[i], f"the search did not answer within {self.step_timeout:g} seconds; try again")
        return answers

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().close_extras(**kwargs)


def make_vec(
    id: str,
    num_envs: int = 1,
    vectorization_mode: str | gym.VectorizeMode | None = None,
    vector_kwargs: dict[str, Any] | None = None,
    wrappers: Sequence[Callable[[gym.Env], gym.Wrapper]] | None = None,
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """`gymnasium.make_vec`, with the same signature and behaviour.

    The default mode, "vector_entry_point", gives `num_envs` sub-envs sharing one
    engine with their searches batched (`search_envs.registration.make_search_vec`);
    its options (asynchronous, max_in_flight, step_timeout, and `engine` to replace
    the engine, e.g. a `RemoteEngine` or a server URL) may be given as kwargs or,
    here only, in `vector_kwargs`. "sync"/"async" give Gymnasium's own vector envs
    (each sub-env with its own engine) and take `wrappers`. kwargs go to every env.
    """
    mode = None if vectorization_mode is None else gym.VectorizeMode(vectorization_mode)
    if mode in (None, gym.VectorizeMode.VECTOR_ENTRY_POINT) and vector_kwargs:
        kwargs, vector_kwargs = {**kwargs, **vector_kwargs}, None
    return gym.make_vec(id, num_envs, vectorization_mode, vector_kwargs, wrappers, **kwargs)
