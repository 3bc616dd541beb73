"""SearchEnv on the real BM25 index over the embedded Wikipedia corpus."""

from __future__ import annotations

import random

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import search_envs
from search_envs import SearchEnv, Task

TASKS = [
    Task("hamlet", "Who wrote the tragedy Hamlet?", ("William Shakespeare", "Shakespeare")),
    Task("paris", "What is the capital of France?", ("Paris",)),
    Task("everest", "What is the highest mountain above sea level?", ("Mount Everest", "Everest")),
]


@pytest.fixture()
def env(bm25_engine):
    return SearchEnv(bm25_engine, TASKS, max_turns=4)


def test_search_returns_search_r1_layout(env):
    obs, info = env.reset(seed=0, options={"task_id": "hamlet"})
    assert obs.startswith("Answer the given question.") and obs.rstrip().endswith("Question: Who wrote the tragedy Hamlet?")
    assert info["task_id"] == "hamlet" and "answers" not in info
    obs, reward, terminated, truncated, info = env.step("<think>I need to look it up.</think><search> Hamlet tragedy Shakespeare </search>")
    assert obs.startswith("\n\n<information>Doc 1(Title: ") and obs.endswith("</information>\n\n")
    assert '(Title: "Hamlet")' in obs
    assert obs.count("Doc ") == 3 and "Doc 3(Title:" in obs
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["queries"] == ["Hamlet tragedy Shakespeare"]
    assert len(info["doc_ids"]) == 1 and len(info["doc_ids"][0]) == 3
    assert info["num_searches"] == 1 and info["action"]["kind"] == "search"

    obs, reward, terminated, truncated, info = env.step("<answer> William Shakespeare </answer>")
    assert terminated and not truncated and reward == 1.0
    assert info["answers"] == ["William Shakespeare", "Shakespeare"]
    assert info["prediction"] == "William Shakespeare"
    assert info["reward_components"] == {"em": 1.0}


def test_wrong_answer_scores_zero(env):
    env.reset(seed=0, options={"task_id": "paris"})
    _, reward, terminated, _, info = env.step("<answer>Lyon</answer>")
    assert terminated and reward == 0.0 and info["reward_components"] == {"em": 0.0}


@pytest.mark.parametrize(
    "action",
    ["", "just some text", "<search></search>", "<search>   </search>", "<answer>unclosed", "<search>a<search>b</search>", None, 12345],
)
def test_invalid_actions_get_a_corrective_observation(env, action):
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    if info["action"]["kind"] == "invalid":
        assert "My previous action is invalid" in obs and "<search>" in obs
        assert info["action"]["error"]
    assert not terminated and reward == 0.0


def test_max_turns_truncates_without_answer(env):
    env.reset(seed=0)
    for turn in range(1, 5):
        _, reward, terminated, truncated, info = env.step("<search>Eiffel Tower</search>")
        assert not terminated
        assert truncated == (turn == 4)
    assert info["prediction"] is None and reward == 0.0 and info["answers"]
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<answer>x</answer>")


def test_length_budget_truncates_huge_actions(bm25_engine):
    env = SearchEnv(bm25_engine, TASKS, max_turns=10, max_episode_chars=50_000)
    env.reset(seed=0)
    huge = "<think>" + "blah " * 20_000 + "</think><search>Mount Everest</search>"  # ~100 KB
    obs, _, terminated, truncated, info = env.step(huge)
    assert truncated and not terminated
    assert "<information>" in obs and info["queries"] == ["Mount Everest"]


def test_step_before_reset_is_a_clear_error(bm25_engine):
    env = SearchEnv(bm25_engine, TASKS)
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<answer>x</answer>")


def test_seeding_is_reproducible_and_private(env):
    def questions(seed):
        out = [env.reset(seed=seed)[1]["task_id"]]
        out += [env.reset()[1]["task_id"] for _ in range(7)]
        return out

    random.seed(1)
    np.random.seed(1)
    first = questions(123)
    random.seed(2)
    np.random.seed(2)  # the global RNGs must not matter
    assert questions(123) == first
    assert len({tuple(questions(s)) for s in range(6)}) > 1


def test_render_ansi_is_the_transcript(bm25_engine):
    env = SearchEnv(bm25_engine, TASKS, render_mode="ansi")
    obs, _ = env.reset(seed=0, options={"task_index": 1})
    step_obs, *_ = env.step("<search>capital of France</search>")
    text = env.render()
    assert text == obs + "<search>capital of France</search>" + step_obs


def test_other_protocols_in_the_env(bm25_engine):
    env = SearchEnv(bm25_engine, TASKS, protocol="tool_call")
    env.reset(seed=0, options={"task_id": "everest"})
    obs, *_, info = env.step('<tool_call>{"name": "web_search", "arguments": {"query": ["Mount Everest", "K2"]}}</tool_call>')
    assert obs.startswith("\n<tool_response>") and "Query: Mount Everest" in obs and "Query: K2" in obs
    assert info["queries"] == ["Mount Everest", "K2"] and len(info["doc_ids"]) == 2
    obs, *_ = env.step('<tool_call>{"name": "browse_webpage", "arguments": {"url_list": ["https://example.org"]}}</tool_call>')
    assert "browsing is not available" in obs

    env = SearchEnv(bm25_engine, TASKS, protocol="r1_searcher", reward="r1_searcher_stage2")
    env.reset(seed=0, options={"task_id": "everest"})
    obs, *_ = env.step("<|begin_of_query|>Mount Everest<|end_of_query|>")
    assert "<|begin_of_documents|>" in obs and "<|end_of_documents|>" in obs
    _, reward, terminated, _, info = env.step("<answer>Mount Everest</answer>")
    assert terminated and reward == 1.0 and info["reward_components"] == {"r1_searcher_f1": 1.0}


@pytest.mark.parametrize("env_id", sorted(search_envs.ENV_IDS))
def test_check_env_on_every_registered_id(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_gym_make_searches_the_embedded_index():
    env = gym.make("SearchEnvs/WikiBM25-v0", max_turns=2)
    obs, info = env.reset(seed=3)
    assert "Question:" in obs and info["question"] in obs
    obs, *_ = env.step("<search>William Shakespeare playwright</search>")
    assert '(Title: "William Shakespeare")' in obs
    env.close()


def test_tasks_and_noise_schedule_from_specs(bm25_engine):
    from search_envs.curriculum import LinearSchedule

    env = SearchEnv(bm25_engine, "ramp:test", noise_schedule={"name": "linear", "total_steps": 10})
    assert env.tasks.name and len(env.tasks) > 100 and env.tasks[0].id.startswith("ramp-")
    assert isinstance(env.noise_schedule, LinearSchedule) and env.noise_schedule.total_steps == 10
    with pytest.raises(ValueError, match="unknown noise schedule"):
        SearchEnv(bm25_engine, TASKS, noise_schedule="nope")
