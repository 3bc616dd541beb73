"""The trainer end to end on CPU: a tiny Llama learns a small search-env task with
GRPO and with PPO; logs, checkpoints, resume, the plot and the CLI work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search_envs.agents.config import TrainConfig
from search_envs.agents.tiny import tiny_llama, torch_threads, word_tokenizer
from search_envs.agents.train import curriculum_progress, evaluation_env_kwargs, step_questions, train
from search_envs.env import SearchEnv
from search_envs.protocols import Protocol
from search_envs.types import Action, Task
from search_envs.vector import make_vec
from search_envs.vector import SearchVectorEnv



@pytest.fixture(autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


QUESTIONS = {"alpha": "red", "beta": "green", "gamma": "blue", "delta": "gold"}


class OneWordProtocol(Protocol):
    """The action is one word, the answer; an empty action is invalid (the env says so and
    the episode goes on), so episodes can be multi-turn."""

    name = "one_word"
    stop_strings = ()

    def prompt(self, question: str) -> str:
        return f"{question} ->"

    def parse(self, text: str) -> Action:
        word = text.strip()
        if not word:
            return Action("invalid", error="empty", format_ok=False)
        return Action("answer", answer=word)

    def wrap(self, text: str) -> str:
        return f" {text} "

    def error_observation(self, message: str) -> str:
        return " again -> "


def no_engine():
    raise AssertionError("this task never searches")


def bandit_env(n: int) -> SearchVectorEnv:
    tasks = [Task(f"q-{q}", q, (a,)) for q, a in QUESTIONS.items()]
    return SearchVectorEnv([SearchEnv(no_engine, tasks, protocol=OneWordProtocol(), max_turns=2) for _ in range(n)])


def tiny_policy():
    words = list(QUESTIONS) + list(QUESTIONS.values()) + ["again", "->"]
    tokenizer = word_tokenizer(words)
    return tiny_llama(len(tokenizer), hidden_size=32, seed=0), tokenizer


def tiny_config(tmp_path, algo: str, **overrides) -> TrainConfig:
    base = dict(
        algo=algo, questions_per_step=4, group_size=8 if algo == "grpo" else 1, mini_batch_size=4,
        micro_batch_size=32, total_steps=40, actor_lr=1e-2, critic_lr=1e-2, actor_warmup_ratio=0.0,
        critic_warmup_ratio=0.0, max_response_length=1, max_turns=2, kl_coef=0.001, use_chat_template=False,
        gradient_checkpointing=False, eval_tasks=None, output_dir=str(tmp_path / algo), save_every=1000,
        progress=False, device="cpu",
    )
    base.update(overrides)
    if "mini_batch_size" not in overrides:  # one update per step: the whole batch
        base["mini_batch_size"] = base["questions_per_step"] * base["group_size"]
    return TrainConfig(**base)


def early_late(rows):
    rewards = [r["reward"] for r in rows if r["type"] == "train"]
    return float(np.mean(rewards[:5])), float(np.mean(rewards[-5:]))


def test_grpo_reward_rises_on_tiny_task(tmp_path):
    model, tokenizer = tiny_policy()
    cfg = tiny_config(tmp_path, "grpo")
    rows = train(cfg, model=model, tokenizer=tokenizer, env=bandit_env(32))
    early, late = early_late(rows)
    assert late > early + 0.3, (early, late)
    out = tmp_path / "grpo"
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(logged) == 40 and {"reward", "em", "kl", "masked_token_share", "tokens_per_second"} <= set(logged[0])
    assert (out / "curves.png").stat().st_size > 1000
    ckpt = out / "checkpoints" / "step_000040"
    assert (ckpt / "actor" / "config.json").is_file() and (ckpt / "trainer_state.pt").is_file()


def test_ppo_reward_rises_on_tiny_task(tmp_path):
    model, tokenizer = tiny_policy()
    cfg = tiny_config(tmp_path, "ppo", questions_per_step=32, mini_batch_size=32)
    rows = train(cfg, model=model, tokenizer=tokenizer, env=bandit_env(32))
    early, late = early_late(rows)
    assert late > early + 0.3, (early, late)
    assert all("value_loss" in r for r in rows)
    assert (tmp_path / "ppo" / "checkpoints" / "step_000040" / "critic" / "value_head.pt").is_file()


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_resume_continues_where_it_stopped(tmp_path, algo):
    model, tokenizer = tiny_policy()
    cfg = tiny_config(tmp_path, algo, total_steps=4, save_every=2, group_size=2)
    env = bandit_env(8)
    full = train(cfg, model=model, tokenizer=tokenizer, env=env)
    assert [r["step"] for r in full] == [1, 2, 3, 4]
    # A second run resumes from step 4's checkpoint: nothing left to do.
    again = train(TrainConfig(**{**cfg.to_dict(), "resume": True}), model=tiny_policy()[0], tokenizer=tokenizer, env=env)
    assert again == []
    # Resuming a longer run from the same folder trains steps 5..6 only, from the saved weights,
    # and keeps the log's rows up to the checkpoint, the step-0 (baseline) evaluation included.
    log_path = tmp_path / algo / "log.jsonl"
    log_path.write_text(json.dumps({"type": "eval", "step": 0}) + "\n" + log_path.read_text())
    more = TrainConfig(**{**cfg.to_dict(), "resume": True, "total_steps": 6})
    rows = train(more, model=tiny_policy()[0], tokenizer=tokenizer, env=env)
    assert [r["step"] for r in rows] == [5, 6]
    logged = [json.loads(line)["step"] for line in log_path.read_text().splitlines()]
    assert logged == [0, 1, 2, 3, 4, 5, 6]
    # A fresh (not resumed) run into the same folder would mix two runs: refused.
    with pytest.raises(ValueError, match="previous run"):
        train(cfg, model=tiny_policy()[0], tokenizer=tokenizer, env=env)


def test_step_questions_cover_epochs_without_repeats():
    ids = [f"t{i}" for i in range(10)]
    first = step_questions(ids, 4, seed=1, step=0) + step_questions(ids, 4, seed=1, step=1)
    assert len(set(first)) == 8  # no question twice within an epoch
    assert step_questions(ids, 4, seed=1, step=2) == step_questions(ids, 4, seed=1, step=2)


def test_curriculum_progress_spans_the_run():
    from search_envs.curriculum import LinearSchedule

    env = SearchVectorEnv([SearchEnv(no_engine, [Task("t", "q", ("a",))], noise_schedule=LinearSchedule(0.0, 0.5, 200))])
    assert curriculum_progress(env, 50, 100) == 100.0  # half the run = half the schedule
    env.set_progress(curriculum_progress(env, 50, 100))
    assert env.envs[0].noise_probability() == pytest.approx(0.25)
    assert curriculum_progress(bandit_env(1), 7, 100) == 7.0  # no schedule: raw steps


def test_grpo_makes_search_r1s_number_of_updates_per_step(tmp_path):
    """Search-R1: ppo_mini_batch_size=256 trajectories (not x n_agent): 512 x 5 / 256 = 10 updates."""
    assert TrainConfig(algo="grpo").updates_per_step == 10
    assert TrainConfig(algo="ppo").updates_per_step == 2
    cfg = tiny_config(tmp_path, "grpo", questions_per_step=2, group_size=4, mini_batch_size=2, total_steps=1)
    rows = train(cfg, model=tiny_policy()[0], tokenizer=tiny_policy()[1], env=bandit_env(8))
    assert cfg.updates_per_step == 4 and rows[-1]["updates"] == 4


def test_held_out_evaluation_is_noise_free_and_answer_blind(tmp_path):
    for env_id in ("SearchEnvs/NoisyWiki-v0", "SearchEnvs/SimSearch-v0"):
        cfg = TrainConfig(env_id=env_id, eval_tasks="ramp:test", env_kwargs={"tasks": "ramp:train"})
        train_env = make_vec(env_id, 1, tasks="ramp:train")
        eval_env = make_vec(env_id, 1, **evaluation_env_kwargs(cfg, {"tasks": "ramp:train"}))
        for env in (train_env, eval_env):
            env.envs[0].total_searches = 5000  # its own search count, if nobody sets the progress
        assert train_env.envs[0].noise_probability() > 0.4
        assert eval_env.envs[0].noise_probability() == 0.0
        if env_id == "SearchEnvs/SimSearch-v0":
            assert train_env.envs[0].engine.include_answer and not eval_env.envs[0].engine.include_answer
            eval_env.envs[0].engine.close()
            train_env.envs[0].engine.close()
        dirty = TrainConfig(env_id=env_id, eval_tasks="ramp:test", eval_clean=False)
        assert "noise_schedule" not in evaluation_env_kwargs(dirty, {})


def test_warmup_follows_verl():
    """verl's get_constant_schedule_with_warmup (volcengine/verl as vendored in Search-R1,
    commit a14dc3a4ffc6fe88c1e95038d9738e21ba3f7a06, verl/utils/torch_functional.py; Apache-2.0)."""
    import torch

    from search_envs.agents.train import warmup_schedule

    def verl_lr_lambda(num_warmup_steps):
        def lr_lambda(current_step):
            return min(1, float(current_step) / float(max(1, num_warmup_steps)))
        return lr_lambda

    for total, ratio in ((1005, 0.285), (10, 0.3), (7, 0.5)):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched, ours = warmup_schedule(opt, total, ratio), []
        for _ in range(total):
            ours.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        verl = verl_lr_lambda(int(ratio * total))
        assert ours == pytest.approx([verl(s) for s in range(total)]) and ours[0] == 0.0
    assert TrainConfig().top_p == 0.95  # train_grpo.sh / train_ppo.sh keep verl's yaml default


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        TrainConfig(algo="dpo")
    with pytest.raises(ValueError):
        TrainConfig(questions_per_step=6, mini_batch_size=4)  # 30 trajectories
    assert TrainConfig(questions_per_step=6, mini_batch_size=10).updates_per_step == 3
    assert TrainConfig(algo="grpo").group_size == 5 and TrainConfig(algo="ppo").group_size == 1
