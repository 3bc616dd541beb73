"""Gymnasium ids. `import search_envs` registers them.

Each entry point builds its engine lazily (on the first search), so
`gym.make(...)` stays cheap and an index is only built or loaded when needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gymnasium.envs.registration import register, registry

from search_envs.env import SearchEnv


def make_wiki_env(
    engine: str = "bm25",
    corpus: str | Path | None = None,
    index_dir: str | Path | None = None,
    tasks: Any = "ramp",
    **env_kwargs: Any,
) -> SearchEnv:
    """A SearchEnv over a local Wikipedia index.

    engine: "bm25", "dense" or "hybrid", or the URL of a retrieval server speaking
    Search-R1's /retrieve protocol (`search-envs serve`, or Search-R1's own
    retrieval_server.py), searched through `RemoteEngine`. corpus: a corpus file in any supported
    format; None means the embedded Wikipedia lead sections. index_dir: a
    prebuilt index (built with `search-envs index build`); None builds one into
    the cache on first use. tasks: a task spec for `load_tasks` (default: the
    offline masked-prediction task set), or a TaskSet / list of Tasks.
    Other keyword arguments go to `SearchEnv` (protocol, reward, top_k, ...).
    """
    from search_envs.engines import open_engine

    def factory():
        if engine.startswith(("http://", "https://")):
            from search_envs.engines.remote import RemoteEngine

            return RemoteEngine(engine, api_key=os.environ.get("SEARCH_ENVS_API_KEY"))
        return open_engine(engine, corpus=corpus, index_dir=index_dir)

    return SearchEnv(factory, tasks, **env_kwargs)


# id -> (entry point, default kwargs). Add new environments here.
ENV_IDS: dict[str, tuple[str, dict[str, Any]]] = {
    "SearchEnvs/WikiBM25-v0": ("search_envs.registration:make_wiki_env", {"engine": "bm25"}),
    "SearchEnvs/WikiDense-v0": ("search_envs.registration:make_wiki_env", {"engine": "dense"}),
    "SearchEnvs/WikiHybrid-v0": ("search_envs.registration:make_wiki_env", {"engine": "hybrid"}),
    "SearchEnvs/WebSearch-v0": ("search_envs.web.environment:make_web_env", {"provider": "duckduckgo"}),
    # ZeroSearch: an LLM writes the results; the noise curriculum is set with `noise_schedule`.
    "SearchEnvs/SimSearch-v0": ("search_envs.engines.simulated:make_sim_env", {"generator": "transformers", "top_k": 5}),
    "SearchEnvs/NoisyWiki-v0": ("search_envs.engines.corpus_noise:make_noisy_wiki_env", {"engine": "bm25"}),
    # SynthWorld: fictional facts, so only searching answers them (docs/synthworld.md).
    "SearchEnvs/SynthWorld-v0": ("search_envs.synthworld:make_synth_env", {"kinds": ("single",)}),
    "SearchEnvs/SynthWorldMultiHop-v0": ("search_envs.synthworld:make_synth_env", {"kinds": ("chain",), "hops": (2, 3, 4)}),
    # ZeroSearch over SynthWorld with an exact simulator (docs/zerosearch.md); generator="openai" swaps in an LLM.
    "SearchEnvs/SynthSim-v0": ("search_envs.engines.synth_sim:make_synth_sim_env", {"generator": "exact"}),
}


def register_envs() -> None:
    for env_id, (entry_point, kwargs) in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, kwargs=kwargs)
