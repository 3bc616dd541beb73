"""Every baseline on the real embedded data with the real SmolLM2 (short generations),
plus the sanity checks' defining properties."""

from __future__ import annotations

import gymnasium as gym
import pytest

import search_envs  # noqa: F401
from search_envs.baselines import BASELINES, OracleRetrieval, RandomPolicy
from search_envs.baselines.common import documents_text, short_answer
from search_envs.policies import run_episodes
from tests.test_policies import env, smollm2  # noqa: F401  (shared fixtures)

LM_BASELINES = ["direct", "cot", "rag", "ircot", "search_o1"]


def test_short_answer():
    assert short_answer("Reasoning. So the answer is: Paris.") == "Paris"
    assert short_answer("Answer: \"Third Servile War\"\nmore text") == "Third Servile War"
    assert short_answer("") == ""


def test_oracle_em_equals_answer_recall_of_the_question_query(env):
    records = run_episodes(OracleRetrieval(), env, n=12, seed=1, progress=False)
    assert all(r.searches == 1 for r in records)
    assert [r.em for r in records] == [float(r.answer_in_results) for r in records]
    assert sum(r.em for r in records) >= 6  # RAMP sentences retrieve their own article


def test_oracle_needs_the_env():
    with pytest.raises(RuntimeError, match="bind"):
        OracleRetrieval().act([[("prompt", "Question: q\n")]])


def test_random_policy_is_seeded_and_valid(env):
    a = run_episodes(RandomPolicy(seed=5), env, n=8, seed=0, progress=False)
    b = run_episodes(RandomPolicy(seed=5), env, n=8, seed=0, progress=False)
    assert [r.trajectory for r in a] == [r.trajectory for r in b]
    assert all(r.format_ok and not r.truncated for r in a)  # always a well-formed action, answers by the last turn
    assert {r.searches for r in a} != {0}


@pytest.mark.slow
@pytest.mark.parametrize("name", LM_BASELINES)
def test_lm_baseline_plays_real_episodes(name, env, smollm2):
    policy = BASELINES[name](smollm2, max_new_tokens=16)
    records = run_episodes(policy, env, n=2, seed=0, progress=False)
    assert len(records) == 2
    for r in records:
        assert r.tokens > 0 and r.turns <= 3
        assert not r.truncated and r.prediction is not None  # every baseline answers within max_turns
        if name in ("direct", "cot"):
            assert r.searches == 0
        if name in ("rag", "ircot"):
            assert r.searches >= 1 and r.trajectory.count("<search>") >= 2  # prompt mentions <search> once


@pytest.mark.slow
def test_search_o1_condenses_documents_and_runs_on_another_protocol(smollm2):
    env = gym.make("SearchEnvs/WikiBM25-v0", tasks="ramp:test", protocol="r1_searcher", max_turns=3)
    policy = BASELINES["search_o1"](smollm2, max_new_tokens=16, condense_tokens=16)
    records = run_episodes(policy, env, n=2, seed=0, progress=False)
    assert len(records) == 2 and all(not r.truncated for r in records)
    if any(r.searches for r in records):
        assert policy._condensed  # every observation was condensed for the model's context


@pytest.mark.slow
def test_rag_on_shared_qa_sample(shared_data, smollm2):
    env = gym.make("SearchEnvs/WikiBM25-v0", tasks=str(shared_data / "qa" / "r1searcher_bamboogle.jsonl"))
    records = run_episodes(BASELINES["rag"](smollm2), env, n=2, seed=0, progress=False)
    assert len(records) == 2 and all(r.searches == 1 and r.prediction for r in records)
    assert documents_text([("prompt", "p"), ("observation", "<information>Doc 1 x</information>")]) == "Doc 1 x"
