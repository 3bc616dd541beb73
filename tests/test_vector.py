"""Vector environments on the real BM25 index over the embedded Wikipedia corpus."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import pytest

import search_envs
from search_envs import SearchEngine, SearchEnv
from search_envs.datasets import load_tasks
from search_envs.vector import AsyncSearchVectorEnv, SearchVectorEnv, make_vec


class RecordingEngine(SearchEngine):
    """The real engine, plus a log of the calls it gets and a failure for queries
    containing "boom" (what a network engine does on a bad day). With `stall`, a query
    containing "slow" does not answer until that event is set, and the others take 20 ms."""

    def __init__(self, engine: SearchEngine, stall: threading.Event | None = None) -> None:
        self.engine, self.stall = engine, stall
        self.calls: list[tuple[int, int]] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()

    def search(self, queries: Sequence[str], k: int, contexts=None):
        with self._lock:
            self.calls.append((len(queries), k))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if any("boom" in q for q in queries):
                raise ConnectionError("server unreachable")
            if self.stall is not None and any("slow" in q for q in queries):
                self.stall.wait(60)
            elif self.stall is not None:
                time.sleep(0.02)  # long enough for calls to overlap
            return self.engine.search(queries, k, contexts)
        finally:
            with self._lock:
                self.in_flight -= 1


def scripted_action(i: int, t: int, obs: str) -> str:
    """A deterministic mix of single and multi-query searches, invalid actions and answers."""
    words = [w.strip('",.:;()[]') for w in obs.split()[-40:]]
    words = [w for w in words if w.isalpha()] or ["wikipedia"]
    pick = lambda j: words[(j * 7 + i * 3 + t) % len(words)]  # noqa: E731
    kind = (i + t) % 5
    if kind in (0, 1):
        return f'<tool_call>{{"name": "web_search", "arguments": {{"query": ["{pick(1)} {pick(2)}"]}}}}</tool_call>'
    if kind == 2:
        queries = f'["{pick(3)} {pick(4)}", "{pick(5)}", "{pick(6)} history"]'
        return f'<tool_call>{{"name": "web_search", "arguments": {{"query": {queries}}}}}</tool_call>'
    if kind == 3:
        return "I am not sure what to do."
    return f"<answer> {pick(8)} </answer>"


def unbatch(infos: dict, i: int) -> dict:
    """Sub-env i's info out of Gymnasium's merged vector info (keys with `_key` masks)."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_") or not infos[f"_{key}"][i]:
            continue
        out[key] = unbatch(value, i) if isinstance(value, dict) else value[i]
    return out


def make_envs(engine: SearchEngine, tasks, top_ks: Sequence[int]) -> list[SearchEnv]:
    return [SearchEnv(engine, tasks, protocol="tool_call", top_k=k, max_turns=3) for k in top_ks]


@pytest.fixture(scope="module")
def ramp_tasks():
    return load_tasks("ramp")


def test_vector_env_matches_envs_run_one_by_one(bm25_engine, ramp_tasks):
    top_ks = [3, 3, 2, 5, 3, 2, 3]
    n, seed, steps = len(top_ks), 123, 14
    engine = RecordingEngine(bm25_engine)
    vec = SearchVectorEnv(make_envs(engine, ramp_tasks, top_ks))
    singles = make_envs(bm25_engine, ramp_tasks, top_ks)

    obs, infos = vec.reset(seed=seed)
    ref = [env.reset(seed=seed + i) for i, env in enumerate(singles)]
    assert obs == tuple(o for o, _ in ref)
    assert [unbatch(infos, i) for i in range(n)] == [info for _, info in ref]

    done = [False] * n
    autoresets = searched_steps = 0
    for t in range(steps):
        actions = [scripted_action(i, t, obs[i]) for i in range(n)]
        calls_before = len(engine.calls)
        obs, rewards, terms, truncs, infos = vec.step(actions)
        assert isinstance(obs, tuple) and rewards.dtype == np.float64 and terms.dtype == np.bool_
        searching_ks = set()
        for i, env in enumerate(singles):
            if done[i]:  # NEXT_STEP autoreset: this step resets, the action is ignored
                o, info = env.reset()
                r, term, trunc = 0.0, False, False
                autoresets += 1
            else:
                if env.protocol.parse(actions[i]).kind == "search":
                    searching_ks.add(env.top_k)
                o, r, term, trunc, info = env.step(actions[i])
            assert obs[i] == o
            assert (rewards[i], terms[i], truncs[i]) == (r, term, trunc)
            assert unbatch(infos, i) == info
            done[i] = term or trunc
        # one batched engine call per distinct top_k among the searching sub-envs
        assert sorted(k for _, k in engine.calls[calls_before:]) == sorted(searching_ks)
        searched_steps += bool(searching_ks)
    assert autoresets >= 5 and searched_steps >= 10
    assert max(nq for nq, _ in engine.calls) >= 4  # several sub-envs' queries really went in one call
    vec.close()


def test_reset_mask_and_seed_list(bm25_engine, ramp_tasks):
    vec = SearchVectorEnv(make_envs(bm25_engine, ramp_tasks, [3, 3, 3]))
    obs, _ = vec.reset(seed=[5, 6, 7])
    single = make_envs(bm25_engine, ramp_tasks, [3])[0]
    assert obs[1] == single.reset(seed=6)[0]
    obs2, infos = vec.reset(seed=[None, 42, None], options={"reset_mask": np.array([False, True, False])})
    assert obs2[0] == obs[0] and obs2[2] == obs[2]
    assert obs2[1] == single.reset(seed=42)[0]
    assert infos["_task_id"].tolist() == [False, True, False]
    with pytest.raises(ValueError):
        vec.reset(seed=[1, 2])
    with pytest.raises(ValueError):
        vec.step(["<answer> x </answer>"])


def test_make_vec_shares_one_engine_and_forwards_progress():
    vec = search_envs.make_vec("SearchEnvs/WikiBM25-v0", 4, top_k=2)
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert vec.num_envs == 4 and isinstance(vec.observation_space, gym.spaces.Tuple)
    obs, infos = vec.reset(seed=0)
    assert len(set(infos["task_id"])) > 1  # seeds 0..3 draw different questions
    obs, rewards, terms, truncs, infos = vec.step(["<search> capital of France </search>"] * 4)
    assert vec.engine_calls == 1
    assert all('(Title: "' in o and o.count("Doc ") == 2 for o in obs)
    assert vec.engine is vec.envs[0].engine
    assert not any(isinstance(env._engine_or_factory, SearchEngine) for env in vec.envs[1:])  # never built
    vec.set_progress(0.25)
    assert vec.get_attr("progress") == (0.25,) * 4
    assert vec.call("noise_probability") == (0.0,) * 4
    vec.close()


def test_engine_failure_becomes_an_error_observation(bm25_engine, ramp_tasks):
    engine = RecordingEngine(bm25_engine)
    vec = SearchVectorEnv(make_envs(engine, ramp_tasks, [3, 3]))
    vec.reset(seed=0)
    search = '<tool_call>{"name": "web_search", "arguments": {"query": ["%s"]}}</tool_call>'
    obs, rewards, terms, truncs, infos = vec.step([search % "boom", search % "Paris"])
    # the batched call failed, so both sub-envs are told so; nothing crashed
    assert all("search engine failed" in o and "server unreachable" in o for o in obs)
    assert not terms.any() and not truncs.any()
    assert infos["num_searches"].tolist() == [0, 0]
    obs, *_ = vec.step([search % "Paris", search % "Paris"])
    assert all('(Title: "' in o for o in obs)


def test_async_vector_env_deadline_and_bounded_concurrency(bm25_engine, ramp_tasks):
    stall = threading.Event()
    engine = RecordingEngine(bm25_engine, stall)
    n = 6
    vec = AsyncSearchVectorEnv(make_envs(engine, ramp_tasks, [3] * n), max_in_flight=2, step_timeout=1.0)
    sync = SearchVectorEnv(make_envs(bm25_engine, ramp_tasks, [3] * n))
    vec.reset(seed=9)
    sync.reset(seed=9)
    search = '<tool_call>{"name": "web_search", "arguments": {"query": ["%s"]}}</tool_call>'
    actions = [search % q for q in ("Mount Everest", "photosynthesis", "slow query", "boom", "Hamlet", "Nile")]
    try:
        obs, rewards, terms, truncs, infos = vec.step(actions)
        assert engine.in_flight == 1  # the step returned while the stalled search still ran: abandoned at the deadline
    finally:
        stall.set()
    assert "did not answer within 1 seconds" in obs[2]
    assert "search engine failed" in obs[3]
    ref, *_ = sync.step([a if i not in (2, 3) else "<answer> x </answer>" for i, a in enumerate(actions)])
    for i in (0, 1, 4, 5):  # the others got exactly what one batched sync call gives
        assert obs[i] == ref[i]
    assert engine.max_in_flight <= 2
    assert all(nq == 1 for nq, _ in engine.calls)  # one request per sub-env
    vec.close()


def test_make_vec_rejects_bad_arguments():
    with pytest.raises(ValueError):
        make_vec("SearchEnvs/WikiBM25-v0", 0)
    with pytest.raises(TypeError):
        SearchVectorEnv([gym.make("CartPole-v1")])


def test_merge_infos_matches_gymnasium_add_info():
    from search_envs.vector import merge_infos

    env_infos = [
        {"turn": 1, "queries": ["a"], "action": {"kind": "search", "error": None}, "score": 0.5},
        {},
        {"turn": 2, "action": {"kind": "answer"}, "reward_components": {"em": 1.0}, "flag": True,
         "vec": np.arange(3)},
    ]
    vec = SearchVectorEnv([SearchEnv(lambda: None, [search_envs.Task("t", "q", ("a",))]) for _ in range(3)])
    want: dict = {}
    for i, info in enumerate(env_infos):
        want = vec._add_info(want, info, i)
    got = merge_infos(env_infos, 3)

    def same(a, b):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], dict):
                same(a[key], b[key])
            else:
                assert a[key].dtype == b[key].dtype and a[key].tolist() == b[key].tolist(), key

    same(got, want)
