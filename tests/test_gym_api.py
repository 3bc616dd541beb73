"""Gymnasium conventions: make_vec / vector entry points, wrappers, rendering, spaces, siblings."""

from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pytest

import search_envs
from search_envs import SearchEnv, Task, TextSpace
from search_envs.policies import run_episodes
from search_envs.registration import ENV_IDS
from search_envs.vector import AsyncSearchVectorEnv, SearchVectorEnv

ID = "SearchEnvs/WikiBM25-v0"
TASKS = [Task("hamlet", "Who wrote Hamlet?", ("William Shakespeare", "Shakespeare"))]


class CountingEngine(search_envs.SearchEngine):
    def __init__(self, engine):
        self.engine, self.closed = engine, 0

    def search(self, queries, k, contexts=None):
        return self.engine.search(queries, k, contexts)

    def close(self):
        self.closed += 1


@pytest.fixture()
def engine(bm25_engine):
    """The session engine, which closing a vector env must not close for the other tests."""
    return CountingEngine(bm25_engine)


def test_every_id_has_a_vector_entry_point():
    for env_id in ENV_IDS:
        assert gym.spec(env_id).vector_entry_point is not None, env_id


def test_gym_make_vec_gives_the_batched_vector_env_with_one_engine(engine):
    vec = gym.make_vec(ID, 3, engine=engine, top_k=2)
    try:
        assert isinstance(vec, SearchVectorEnv)
        assert vec.spec.id == ID and vec.spec.kwargs["vectorization_mode"] == "vector_entry_point"
        vec.reset(seed=0)
        obs, *_ = vec.step(["<search> capital of France </search>"] * 3)
        assert vec.engine_calls == 1  # the three searches went to the engine in one call
        assert all(env.engine is engine for env in vec.envs)
        assert all(o.count("Doc ") == 2 for o in obs)
    finally:
        vec.close()


def test_a_lazily_built_engine_is_built_once_and_shared():
    vec = gym.make_vec(ID, 3)
    try:
        vec.reset(seed=0)
        vec.step(["<search> Hamlet </search>"] * 3)
        assert len({id(env.engine) for env in vec.envs}) == 1 and vec.engine is vec.envs[0].engine
    finally:
        vec.close()


def test_make_vec_has_gymnasiums_signature_and_modes(engine):
    ours = inspect.signature(search_envs.make_vec).parameters
    theirs = inspect.signature(gym.make_vec).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    vec = search_envs.make_vec(ID, 2, vector_kwargs={"asynchronous": True, "step_timeout": 5.0}, engine=engine)
    assert isinstance(vec, AsyncSearchVectorEnv) and vec.step_timeout == 5.0
    vec.close()
    sync = search_envs.make_vec(ID, 2, vectorization_mode="sync", engine=engine, tasks=TASKS,
                                wrappers=[lambda e: gym.wrappers.TransformObservation(e, str.upper, e.observation_space)])
    try:
        assert isinstance(sync, gym.vector.SyncVectorEnv)
        obs, _ = sync.reset(seed=0)
        assert all(o == o.upper() and "HAMLET" in o for o in obs)  # the wrapper was applied
    finally:
        sync.close()


def test_wrappers_on_sub_envs_are_refused_not_dropped(engine):
    wrapped = gym.wrappers.TransformObservation(gym.make(ID, engine=engine), str.upper, TextSpace())
    with pytest.raises(ValueError, match="TransformObservation would be skipped"):
        SearchVectorEnv([wrapped])
    with pytest.raises(gym.error.Error, match="wrappers"):
        search_envs.make_vec(ID, 2, wrappers=[gym.wrappers.RecordEpisodeStatistics], engine=engine)
    SearchVectorEnv([gym.make(ID, engine=engine)]).close()  # gym.make's checking wrappers are fine


def test_human_render_shows_what_changed(engine, capsys):
    env = SearchEnv(engine, TASKS, render_mode="human")
    prompt, _ = env.reset(seed=0)
    assert capsys.readouterr().out == prompt + "\n"
    obs, *_ = env.step("<search> Hamlet </search>")
    out = capsys.readouterr().out
    assert out == "<search> Hamlet </search>" + obs + "\n" and prompt not in out
    env.render()  # nothing new since the step
    assert capsys.readouterr().out == ""
    env.step("<answer> Shakespeare </answer>")
    assert capsys.readouterr().out == "<answer> Shakespeare </answer>\n"


def test_text_space_samples_what_it_contains():
    space = TextSpace(max_length=400, seed=3)
    samples = [space.sample() for _ in range(50)]
    assert all(space.contains(s) for s in samples)
    assert len({len(s) for s in samples}) > 10
    chars = "".join(samples)
    assert max(map(ord, chars)) > 0xFFFF  # beyond ASCII and the BMP: all of unicode
    chars.encode("utf-8")  # no lone surrogates
    masked = space.sample(mask=(5, np.ones(len(space.character_set), dtype=np.int8)))
    assert len(masked) == 5 and masked.isascii()


def test_sibling_copies_every_setting_and_shares_the_engine(engine):
    init = set(inspect.signature(SearchEnv.__init__).parameters) - {"self", "engine", "tasks"}
    assert set(SearchEnv.SETTINGS) == init
    built = []
    env = SearchEnv(lambda: built.append(1) or engine, TASKS, protocol="tool_call", reward="f1", top_k=2,
                    max_turns=7, max_obs_chars=999, max_episode_chars=12345, noise_schedule=0.5, render_mode="ansi")
    other = env.sibling(tasks=TASKS + [Task("paris", "Capital of France?", ("Paris",))])
    for name, attr in SearchEnv.SETTINGS.items():
        assert getattr(other, attr) == getattr(env, attr), name
    assert len(other.tasks) == 2
    assert other.engine is env.engine and built == [1]
    with pytest.raises(TypeError, match="unknown setting"):
        env.sibling(colour="red")


def test_a_sibling_does_not_close_the_shared_engine(bm25_engine):
    engine = CountingEngine(bm25_engine)
    env = SearchEnv(engine, TASKS)
    env.sibling().close()
    assert engine.closed == 0
    env.close()
    assert engine.closed == 1


class ShoutingEnv(SearchEnv):
    """Reports its prediction upper-cased: run_episodes must read it from the infos."""

    def end_step(self, results):
        obs, reward, terminated, truncated, info = super().end_step(results)
        if info.get("prediction"):
            info["prediction"] = info["prediction"].upper()
        return obs, reward, terminated, truncated, info


def test_run_episodes_reads_the_outcome_from_infos(engine):
    env = ShoutingEnv(engine, TASKS)
    [record] = run_episodes(lambda batch: ["<answer> Shakespeare </answer>"] * len(batch), env, n=1, progress=False)
    assert record.prediction == "SHAKESPEARE" and record.em == 1.0


def test_search_errors_come_in_one_way(engine):
    """A failed engine call reaches the env as `unanswered` SearchFailures, as a per-query failure does."""
    from search_envs.engines.base import SearchFailure

    assert "error" not in inspect.signature(SearchEnv.end_step).parameters
    env = SearchEnv(engine, TASKS, max_turns=5)
    env.reset(seed=0)
    env.begin_step("<search> Hamlet </search>")
    obs, _, _, _, info = env.end_step([SearchFailure("the server is down", unanswered=True)])
    assert "the server is down" in obs and info["search_error"] == "the server is down"
    assert info["num_searches"] == 0
    env.begin_step("<search> Hamlet </search>")
    obs, _, _, _, info = env.end_step([SearchFailure("provider said no")])  # answered, with an error
    assert info["search_errors"] == ["provider said no"] and info["num_searches"] == 1


def test_engine_replaces_the_engine_of_ids_whose_factory_takes_none(engine):
    """SimSearch's factory has no engine argument: `engine=` becomes the vector env's shared engine."""
    vec = gym.make_vec("SearchEnvs/SimSearch-v0", 2, engine=engine, tasks=TASKS)
    try:
        vec.reset(seed=0)
        obs, *_ = vec.step(["<search> Hamlet </search>"] * 2)
        assert vec.engine is engine and all('(Title: "' in o for o in obs)
    finally:
        vec.close()
