"""Every Gymnasium id of search-envs and the factory that builds it, in one table.

`import search_envs` registers them. Each id gets an `entry_point` (one env, for
`gym.make`) and a `vector_entry_point` (for `gym.make_vec`: `num_envs` sub-envs
sharing one engine, their searches batched into one call per step, see
`search_envs.vector`). Each factory builds its engine lazily (on the first
search), so `gym.make(...)` stays cheap and an index is only built or loaded when
needed. To add an environment: write its factory (here, or in its own module)
and add a line to `ENV_IDS`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import load_env_creator, register, registry

from search_envs.env import SearchEnv

if TYPE_CHECKING:
    from collections.abc import Sequence

    from search_envs.engines.base import SearchEngine
    from search_envs.generation import Generator
    from search_envs.synthworld import WorldConfig
    from search_envs.vector import SearchVectorEnv
    from search_envs.web.cache import WebCache
    from search_envs.web.fetch import FetchPolicy
    from search_envs.web.providers import Provider


def make_wiki_env(
    engine: "str | SearchEngine" = "bm25",
    corpus: str | Path | None = None,
    index_dir: str | Path | None = None,
    tasks: Any = "ramp",
    **env_kwargs: Any,
) -> SearchEnv:
    """`SearchEnvs/Wiki{BM25,Dense,Hybrid}-v0`: a SearchEnv over a local Wikipedia index.

    engine: an engine spec for `search_envs.index.open_engine`: "bm25", "dense" or
    "hybrid", the URL of a retrieval server speaking Search-R1's /retrieve protocol
    (`search-envs serve`, or Search-R1's own retrieval_server.py), or a SearchEngine.
    corpus: a corpus file in any supported format; None means the embedded Wikipedia
    lead sections. index_dir: a prebuilt index (built with `search-envs index
    build`); None builds one into the cache on first use. tasks: a task spec for
    `load_tasks` (default: the offline masked-prediction task set), or a TaskSet /
    list of Tasks. Other keyword arguments go to `SearchEnv` (protocol, reward, top_k, ...).
    """
    from search_envs.index import open_engine

    return SearchEnv(lambda: open_engine(engine, corpus=corpus, index_dir=index_dir), tasks, **env_kwargs)


def make_noisy_wiki_env(
    engine: "str | SearchEngine" = "bm25",
    corpus: str | Path | None = None,
    index_dir: str | Path | None = None,
    tasks: Any = "ramp",
    noise_schedule: Any = "exponential",
    depth: int = 50,
    noise_start_rank: int = 10,
    **env_kwargs: Any,
) -> SearchEnv:
    """`SearchEnvs/NoisyWiki-v0`: a ZeroSearch-style curriculum over a local Wikipedia
    index, with corpus noise (`CorpusNoiseEngine`) instead of a simulator LLM.

    engine / corpus / index_dir: as for `SearchEnvs/WikiBM25-v0`. noise_schedule:
    a spec for `search_envs.curriculum.make_schedule` (default: ZeroSearch's
    exponential 0 -> 0.5). Other keyword arguments go to `SearchEnv`.
    """
    from search_envs.engines.corpus_noise import CorpusNoiseEngine
    from search_envs.index import open_engine

    def factory() -> CorpusNoiseEngine:
        base = open_engine(engine, corpus=corpus, index_dir=index_dir)
        return CorpusNoiseEngine(base, depth=depth, noise_start_rank=noise_start_rank)

    return SearchEnv(factory, tasks, noise_schedule=noise_schedule, **env_kwargs)


def make_sim_env(
    generator: "str | Generator" = "transformers",
    generator_kwargs: dict[str, Any] | None = None,
    include_answer: bool = True,
    cache: bool | str | Path = True,
    noise_schedule: Any = "exponential",
    tasks: Any = "ramp",
    engine_kwargs: dict[str, Any] | None = None,
    **env_kwargs: Any,
) -> SearchEnv:
    """`SearchEnvs/SimSearch-v0`: ZeroSearch, a SearchEnv over an LLM-simulated engine.

    generator / generator_kwargs choose the simulator ("transformers" with
    {"model_path": ...}, "openai" with {"base_url", "model"}, "vllm"); the model
    loads on the first search. noise_schedule is a spec for
    `search_envs.curriculum.make_schedule` (default: ZeroSearch's exponential
    curriculum 0 -> 0.5). tasks: a spec for `load_tasks`, or tasks.
    Other keyword arguments go to `SearchEnv`.
    """
    from search_envs.engines.simulated import SimulatedEngine

    def factory() -> SimulatedEngine:
        return SimulatedEngine(
            generator, include_answer=include_answer, cache=cache, **(engine_kwargs or {}), **(generator_kwargs or {})
        )

    return SearchEnv(factory, tasks, noise_schedule=noise_schedule, **env_kwargs)


def make_web_env(
    provider: "str | Provider" = "duckduckgo",
    provider_options: dict[str, Any] | None = None,
    cache: "WebCache | str | Path | None" = None,
    mode: str = "live",
    tasks: Any = "ramp",
    browse: bool = True,
    fetch_policy: "FetchPolicy | None" = None,
    require_result_urls: bool = True,
    search_deadline: float = 30.0,
    browse_max_chars: int | None = None,
    protocol: Any = "tool_call",
    **env_kwargs: Any,
) -> SearchEnv:
    """`SearchEnvs/WebSearch-v0`: a SearchEnv whose engine is a `WebSearchEngine` and
    whose browser a `WebBrowser`.

    provider / provider_options: see `search_envs.web.PROVIDERS` (the provider is
    built now, so a missing API key fails here, not mid-episode). cache / mode:
    record / replay of searches and pages in one SQLite file. tasks: a spec for
    `load_tasks` (default: the offline "ramp" set) or a TaskSet / list of Tasks.
    browse: offer the browse action (`browse_webpage` in the tool_call protocol,
    `<browse>` in `search_r1_browse`); browse_max_chars: its observation budget
    (default: `max_obs_chars`). Other keyword arguments go to `SearchEnv`.
    """
    from search_envs.engines.web import WebSearchEngine
    from search_envs.web.browser import WebBrowser
    from search_envs.web.cache import open_cache
    from search_envs.web.providers import make_provider

    provider_obj = make_provider(provider, **(provider_options or {}))
    shared_cache = open_cache(cache, mode)

    def factory() -> WebSearchEngine:
        return WebSearchEngine(provider_obj, cache=shared_cache, mode=mode, deadline=search_deadline)

    browser = None
    if browse:
        browser = WebBrowser(
            policy=fetch_policy,
            cache=shared_cache,
            mode=mode,
            max_chars=browse_max_chars or env_kwargs.get("max_obs_chars", 6000),
            require_result_urls=require_result_urls,
        )
    return SearchEnv(factory, tasks, protocol=protocol, browser=browser, **env_kwargs)


def make_synth_env(
    engine: Any = "bm25",
    tasks: Any = "train",
    kinds: tuple[str, ...] | list[str] | None = ("single",),
    hops: tuple[int, ...] | list[int] | None = None,
    relations: tuple[str, ...] | list[str] | None = None,
    world: dict[str, Any] | None = None,
    index_dir: str | Path | None = None,
    **env_kwargs: Any,
):
    """`SearchEnvs/SynthWorld-v0` / `SynthWorldMultiHop-v0`: a SearchEnv over a SynthWorld corpus.

    engine: "bm25", "dense", "hybrid", or a retrieval server URL serving this world's
    corpus (`search-envs serve --corpus <corpus_path(config)>`), or a callable taking the
    `WorldConfig` and returning an engine (`SearchEnvs/SynthSim-v0`). tasks: "train",
    "test", "all", a ``synth:`` spec (its world knobs override `world`), or a TaskSet.
    kinds / hops / relations: question filters for a split name. world: `WorldConfig`
    fields. Other keyword arguments go to `SearchEnv` (protocol, reward, top_k, ...).
    """
    from search_envs.synthworld import SPLITS, WorldConfig, corpus_path, generate_world, parse_spec

    config = WorldConfig(**(world or {}))
    if isinstance(tasks, str) and (tasks.startswith("synth:") or tasks in (*SPLITS, "all")):
        if tasks.startswith("synth:"):
            overrides, filters = parse_spec(tasks)
            config = replace(config, **overrides)
        else:
            filters = {"split": tasks}
        filters.setdefault("kinds", tuple(kinds) if kinds else None)
        filters.setdefault("hops", tuple(hops) if hops else None)
        filters.setdefault("relations", tuple(relations) if relations else None)
        tasks = generate_world(config).tasks(**filters)

    def factory():
        from search_envs.index import is_server_url, open_engine

        if callable(engine):
            return engine(config)
        if is_server_url(engine):  # the server holds this world's corpus itself
            return open_engine(engine)
        return open_engine(engine, corpus=corpus_path(config), index_dir=index_dir)

    return SearchEnv(factory, tasks, **env_kwargs)


def make_synth_sim_env(
    generator: str = "exact",
    generator_kwargs: dict[str, Any] | None = None,
    noise_kinds: Sequence[str] | str | None = None,
    include_answer: bool = True,
    noise_schedule: Any = "exponential",
    tasks: Any = "train",
    world: dict[str, Any] | None = None,
    cache: Any = True,
    engine_kwargs: dict[str, Any] | None = None,
    **env_kwargs: Any,
):
    """`SearchEnvs/SynthSim-v0`: ZeroSearch over a SynthWorld, the simulator exact.

    generator: "exact" (`SynthSimEngine`, no LLM) or a `SimulatedEngine` backend
    ("transformers", "openai", "vllm") with `generator_kwargs` and `cache`: the same
    env, tasks and curriculum with an LLM writing the documents. noise_kinds: the
    exact engine's noisy kinds (default: all of `NOISE_KINDS`). noise_schedule: a `make_schedule` spec (default:
    ZeroSearch's exponential 0 -> 0.5). tasks / world / kinds / hops / relations: as
    `SearchEnvs/SynthWorld-v0`. engine_kwargs: more engine options (seed,
    drop_leaking_noisy, or SimulatedEngine's). Other keyword arguments go to `SearchEnv`.
    """
    from search_envs.engines.synth_sim import NOISE_KINDS, SynthSimEngine
    from search_envs.synthworld import generate_world

    noise_kinds = NOISE_KINDS if noise_kinds is None else noise_kinds
    if generator == "exact":
        if generator_kwargs:
            raise ValueError("generator_kwargs are for an LLM generator; the exact engine takes engine_kwargs")

        def engine(config: WorldConfig) -> SearchEngine:
            return SynthSimEngine(generate_world(config), noise_kinds=noise_kinds, include_answer=include_answer,
                                  **(engine_kwargs or {}))
    else:
        def engine(config: WorldConfig) -> SearchEngine:
            from search_envs.engines.simulated import SimulatedEngine

            return SimulatedEngine(generator, include_answer=include_answer, cache=cache, **(engine_kwargs or {}),
                                   **(generator_kwargs or {}))

    return make_synth_env(engine=engine, tasks=tasks, world=world, noise_schedule=noise_schedule, **env_kwargs)


# id -> (entry point, default kwargs). Add new environments here: each gets a vector entry point too.
ENV_IDS: dict[str, tuple[str, dict[str, Any]]] = {
    "SearchEnvs/WikiBM25-v0": ("search_envs.registration:make_wiki_env", {"engine": "bm25"}),
    "SearchEnvs/WikiDense-v0": ("search_envs.registration:make_wiki_env", {"engine": "dense"}),
    "SearchEnvs/WikiHybrid-v0": ("search_envs.registration:make_wiki_env", {"engine": "hybrid"}),
    "SearchEnvs/WebSearch-v0": ("search_envs.registration:make_web_env", {"provider": "duckduckgo"}),
    # ZeroSearch: an LLM writes the results; the noise curriculum is set with `noise_schedule`.
    "SearchEnvs/SimSearch-v0": ("search_envs.registration:make_sim_env", {"generator": "transformers", "top_k": 5}),
    "SearchEnvs/NoisyWiki-v0": ("search_envs.registration:make_noisy_wiki_env", {"engine": "bm25"}),
    # SynthWorld: fictional facts, so only searching answers them (docs/synthworld.md).
    "SearchEnvs/SynthWorld-v0": ("search_envs.registration:make_synth_env", {"kinds": ("single",)}),
    "SearchEnvs/SynthWorldMultiHop-v0": ("search_envs.registration:make_synth_env", {"kinds": ("chain",), "hops": (2, 3, 4)}),
    # ZeroSearch over SynthWorld with an exact simulator (docs/zerosearch.md); generator="openai" swaps in an LLM.
    "SearchEnvs/SynthSim-v0": ("search_envs.registration:make_synth_sim_env", {"generator": "exact"}),
}


def make_search_vec(
    entry_point: str,
    num_envs: int = 1,
    *,
    asynchronous: bool = False,
    max_in_flight: int = 16,
    step_timeout: float = 30.0,
    **env_kwargs: Any,
) -> "SearchVectorEnv":
    """The vector entry point of every id: `num_envs` siblings of one env sharing its engine.

    env_kwargs go to the id's factory. `engine`, for an id whose factory takes no
    engine spec (SimSearch, WebSearch), replaces the engine the sub-envs would
    build (a SearchEngine or a spec for `open_engine`, e.g. a retrieval server URL).
    asynchronous=True gives an `AsyncSearchVectorEnv` (max_in_flight, step_timeout).
    """
    from search_envs.vector import AsyncSearchVectorEnv, SearchVectorEnv

    if num_envs < 1:
        raise ValueError("num_envs must be >= 1")
    factory = load_env_creator(entry_point)
    engine = None
    if "engine" in env_kwargs and "engine" not in inspect.signature(factory).parameters:
        from search_envs.index import open_engine

        engine = open_engine(env_kwargs.pop("engine"))
    first = factory(**env_kwargs)
    envs = [first] + [first.sibling() for _ in range(num_envs - 1)]
    if asynchronous:
        return AsyncSearchVectorEnv(envs, engine, max_in_flight=max_in_flight, step_timeout=step_timeout)
    return SearchVectorEnv(envs, engine)


def register_envs() -> None:
    for env_id, (entry_point, kwargs) in ENV_IDS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point=entry_point,
                vector_entry_point=functools.partial(make_search_vec, entry_point),
                kwargs=kwargs,
            )
