"""DAPO and REINFORCE++ end to end on CPU: the tiny Llama learns the tiny task of
test_agent_train with each, and dynamic sampling refills its groups."""

from __future__ import annotations

import pytest
from test_agent_train import (  # noqa: F401 (one_torch_thread is an autouse fixture)
    QUESTIONS,
    OneWordProtocol,
    bandit_env,
    early_late,
    no_engine,
    one_torch_thread,
    tiny_config,
    tiny_policy,
)

from search_envs.agents.train import train
from search_envs.env import SearchEnv
from search_envs.types import Task
from search_envs.vector import SearchVectorEnv


@pytest.mark.parametrize("algo", ["dapo", "reinforce_pp"])
def test_reward_rises_on_tiny_task(tmp_path, algo):
    model, tokenizer = tiny_policy()
    cfg = tiny_config(tmp_path, algo, group_size=8, kl_coef=None)
    rows = train(cfg, model=model, tokenizer=tokenizer, env=bandit_env(32))
    early, late = early_late(rows)
    assert late > early + 0.3, (early, late)
    if algo == "dapo":
        # every step keeps only groups whose 8 episodes disagree, refilling up to 10 rounds
        assert all(1 <= r["gen_batches"] <= 10 and r["kept_groups"] <= 4 for r in rows)
        assert any(r["gen_batches"] > 1 for r in rows)
        assert all("kl_loss" not in r for r in rows)  # DAPO drops the KL


def test_dynamic_sampling_stops_at_max_gen_batches(tmp_path):
    """A task nobody can solve: no group is informative; the step still trains (on zero
    advantages) after max_gen_batches rounds instead of looping forever."""
    model, tokenizer = tiny_policy()
    cfg = tiny_config(tmp_path, "dapo", group_size=8, total_steps=2, max_gen_batches=3, kl_coef=None)
    tasks = [Task(f"q-{q}", q, ("unreachable-answer",)) for q in QUESTIONS]
    env = SearchVectorEnv([SearchEnv(no_engine, tasks, protocol=OneWordProtocol(), max_turns=2) for _ in range(32)])
    rows = train(cfg, model=model, tokenizer=tokenizer, env=env)
    assert [(r["gen_batches"], r["kept_groups"]) for r in rows] == [(3.0, 0.0), (3.0, 0.0)]
    assert all(r["reward"] == 0.0 for r in rows)


def test_cli_options_for_the_new_algorithms():
    from search_envs.cli import build_parser
    from search_envs.commands.train import config_from_args

    args = build_parser().parse_args(["train", "--algo", "dapo", "--clip-ratio-high", "0.3", "--no-dynamic-sampling",
                                      "--overlong-buffer-len", "100", "--kl-coef", "0.01"])
    cfg = config_from_args(args)
    assert (cfg.clip_ratio_high, cfg.dynamic_sampling, cfg.overlong_buffer_len, cfg.kl_coef) == (0.3, False, 100, 0.01)
    cfg = config_from_args(build_parser().parse_args(["train", "--algo", "reinforce_pp", "--no-reinforce-baseline"]))
    assert cfg.algo == "reinforce_pp" and not cfg.reinforce_baseline and cfg.loss_agg_mode == "seq-mean-token-mean"
