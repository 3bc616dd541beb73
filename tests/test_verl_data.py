"""verl data export and the compute_score reward (no verl needed): rows carry what the
agent loop needs and read back as the same tasks; compute_score gives the env's reward."""

from __future__ import annotations

import json

import gymnasium as gym
import pandas as pd
import pytest

import search_envs  # noqa: F401
from search_envs.cli import main
from search_envs.datasets import load_tasks
from search_envs.integrations.verl import AGENT_NAME
from search_envs.integrations.verl.reward import compute_score


def test_export_verl_writes_train_and_test_rows_for_the_loop(tmp_path, capsys):
    out = tmp_path / "verl"
    assert main(["data", "export-verl", "--tasks", "ramp:test", "--out", str(out), "--test-fraction", "0.2",
                 "--env", "SearchEnvs/NoisyWiki-v0",
                 "--env-kwargs", '{"protocol": "r1_searcher", "max_turns": 2, "noise_schedule": {"name": "linear", "total_steps": 50}}']) == 0
    assert "train.parquet" in capsys.readouterr().out
    train, test = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "test.parquet")
    tasks = load_tasks("ramp:test")
    assert len(train) + len(test) == len(tasks) and len(test) == round(0.2 * len(tasks))
    assert not set(train["id"]) & set(test["id"])
    row = test.iloc[0]
    extra = row["extra_info"]
    kwargs = json.loads(extra["env_kwargs"])
    assert row["agent_name"] == AGENT_NAME and extra["env_id"] == "SearchEnvs/NoisyWiki-v0"
    assert kwargs == {"protocol": "r1_searcher", "max_turns": 2, "tasks": "ramp:test",
                      "noise_schedule": {"name": "linear", "total_steps": 50}}
    # the prompt column is exactly the reset observation of the env the loop builds
    env = gym.make(extra["env_id"], **kwargs)
    prompt, info = env.reset(options={"task_id": extra["task_id"]})
    assert list(row["prompt"]) == [{"role": "user", "content": prompt}]
    assert list(row["reward_model"]["ground_truth"]["target"]) == list(tasks.by_id(extra["task_id"]).answers)
    # the files read back as the same tasks: ids, answers and questions (kept in extra_info, since
    # a prompt may change the question: Search-R1's adds a "?")
    back = load_tasks(str(out / "test.parquet"))
    assert [(t.id, t.question, t.answers) for t in back] == [
        (t.id, t.question, t.answers) for t in (tasks.by_id(i) for i in test["id"])]
    main(["data", "export-verl", "--tasks", "ramp:test", "--out", str(tmp_path / "sr1")])
    sr1 = pd.read_parquet(tmp_path / "sr1" / "test.parquet")
    assert [(t.id, t.question) for t in load_tasks(str(tmp_path / "sr1" / "test.parquet"))] == [
        (i, tasks.by_id(i).question) for i in sr1["id"]]


def test_export_verl_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "export-verl", "--tasks", "ramp:test", "--out", str(tmp_path), "--env-kwargs", "[1]"]) == 2
    assert "JSON object" in capsys.readouterr().err
    assert main(["data", "export-verl", "--tasks", "ramp:test", "--out", str(tmp_path),
                 "--env-kwargs", '{"tasks": "x"}']) == 2
    assert main(["data", "export-verl", "--tasks", "no/such/file.jsonl", "--out", str(tmp_path)]) == 2
    assert main(["data", "export-verl", "--tasks", "ramp:test", "--out", str(tmp_path), "--test-fraction", "1.5"]) == 2


@pytest.mark.parametrize("protocol", ["search_r1", "r1_searcher", "tool_call"])
@pytest.mark.parametrize("reward", ["em", "f1", "search_r1", "r1_searcher_stage2", "r1_searcher_stage1"])
def test_compute_score_equals_the_env_reward(protocol, reward, bm25_engine):
    """Play real episodes (real BM25), decode them as verl would (response = actions and
    observations after the prompt) and score the text: the env's reward, component by component."""
    env = gym.make("SearchEnvs/WikiBM25-v0", tasks="ramp:test", protocol=protocol, reward=reward, max_turns=3)
    env.unwrapped._engine_or_factory = bm25_engine
    p = env.unwrapped.protocol
    checked = 0
    for i, task in enumerate(list(env.unwrapped.tasks)[:6]):
        env.reset(seed=i, options={"task_id": task.id})
        right = task.answers[0] if i % 2 == 0 else "certainly not this"
        think = "<think> hmm </think>" if i % 3 else "<think> unbalanced"
        plan = [think + p.search_action(task.question[:50]), "no tags at all", think + p.answer_action(right)]
        response = ""
        for action in plan:
            obs, reward_value, terminated, truncated, info = env.step(action)
            response += action
            if terminated or truncated:
                break
            response += obs
        extra = {"env_kwargs": json.dumps({"protocol": protocol, "reward": reward})}
        score = compute_score("ramp", response, {"target": list(task.answers)}, extra)
        assert score["score"] == pytest.approx(reward_value)
        for k, v in info["reward_components"].items():
            assert score[k] == pytest.approx(v)
        checked += reward_value != 0
    assert checked, "some episodes score"


def test_compute_score_without_an_answer_and_with_defaults():
    assert compute_score("nq", "<think> no idea", ["Paris"])["score"] == 0.0
    assert compute_score("nq", "<answer> paris </answer>", {"target": ["Paris"]})["score"] == 1.0  # em, search_r1
    with pytest.raises(ValueError):
        compute_score("nq", "x", ["a"], {"env_kwargs": json.dumps({"reward": "nope"})})


def test_the_agent_loop_without_verl_says_how_to_install_it():
    try:
        import verl.experimental.agent_loop  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"search-envs\[verl\]"):
            import search_envs.integrations.verl.agent_loop  # noqa: F401
    else:
        pytest.skip("verl is installed here (the verl environment tests the loop itself)")
