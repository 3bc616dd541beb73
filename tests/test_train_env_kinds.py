"""The reference agent trained a few steps against every kind of env: corpus noise
(NoisyWiki-v0) and an LLM simulator (SimSearch-v0) with the curriculum advancing with
the trainer's step and a noise-free held-out evaluation, and the web (WebSearch-v0)
in replay mode over a cache recorded from local servers speaking a provider's format,
so the web-trained run repeats offline. Each checks that the masks line up.

The policy is a tiny Llama (agents/tiny.py) taught in a few dozen steps to write a
search, so rollouts really search."""

from __future__ import annotations


import gymnasium as gym
import pytest
import torch
from test_agent_rollout import check_mask_lines_up
from web_servers import KEYS, LocalWeb, no_external_network  # noqa: F401

import search_envs  # noqa: F401  (registers the ids)
from search_envs.agents.config import TrainConfig
from search_envs.agents.rollout import HFRolloutGenerator, collect_rollouts, encode_prompt
from search_envs.agents.tiny import tiny_llama, torch_threads, word_tokenizer
from search_envs.agents.train import train
from search_envs.cli import build_parser, main
from search_envs.commands.train import config_from_args
from search_envs.types import Task
from search_envs.vector import SearchVectorEnv

ACTION = "<search> eiffel tower </search>"
WEB_TASKS = [Task("eiffel", "How tall is the Eiffel Tower?", ("330 metres",)),
             Task("curie", "Which element did Marie Curie name after Poland?", ("polonium",))]
LINEAR = {"name": "linear", "p_start": 0.0, "p_end": 1.0, "total_steps": 30}


@pytest.fixture(autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


def searching_tiny_model(prompts: list[str]):
    """A tiny Llama over a handful of words (the rest of a prompt is <unk>), taught with
    teacher forcing to answer any prompt with ACTION, so its rollouts search."""
    tokenizer = word_tokenizer([ACTION, "<answer> polonium </answer>"], extra_words=["<information>", "</information>"])
    model = tiny_llama(len(tokenizer), seed=0)
    action = tokenizer.encode(ACTION, add_special_tokens=False)
    rows = [encode_prompt(tokenizer, p, False) + action for p in prompts]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        for ids in rows:
            x = torch.tensor([ids])
            logits = model(input_ids=x).logits[0, :-1]
            n = len(action)
            loss = torch.nn.functional.cross_entropy(logits[-n:], x[0, -n:])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model, tokenizer


def train_config(tmp_path, env_id: str, name: str, **overrides) -> TrainConfig:
    base = dict(algo="grpo", env_id=env_id, questions_per_step=2, group_size=2, mini_batch_size=2, micro_batch_size=4,
                total_steps=3, actor_lr=1e-3, actor_warmup_ratio=0.0, max_turns=2, max_response_length=6,
                max_obs_length=64, max_total_length=1024, use_chat_template=False, gradient_checkpointing=False,
                eval_tasks=None, output_dir=str(tmp_path / name), save_every=1000, eval_every=3, progress=False,
                device="cpu", seed=0)
    base.update(overrides)
    return TrainConfig(**base)


def vec(env_id: str, n: int, **kwargs) -> SearchVectorEnv:
    return SearchVectorEnv([gym.make(env_id, **kwargs).unwrapped for _ in range(n)])


def check_rollout_masks(model, tokenizer, env: SearchVectorEnv) -> list:
    env.set_progress(env.envs[0].noise_schedule.total_steps if env.envs[0].noise_schedule else 0)
    tasks = list(env.envs[0].tasks)
    ids = [tasks[i % len(tasks)].id for i in range(env.num_envs)]
    gen = HFRolloutGenerator(model, tokenizer, env.envs[0].protocol.stop_strings, temperature=1.0)
    trajs = collect_rollouts(gen, tokenizer, env, ids, list(range(env.num_envs)), use_chat_template=False,
                             max_response_length=6, max_obs_length=64, max_total_length=1024, seed=1)
    for t in trajs:
        prompt = encode_prompt(tokenizer, env.envs[0].protocol.prompt(env.envs[0].tasks.by_id(t.task_id).question), False)
        check_mask_lines_up(t, tokenizer, prompt, skip_special=True)
    assert sum(a.startswith("<search>") for t in trajs for a in t.actions) >= len(trajs)  # they really search
    return trajs


def check_curriculum_run(cfg: TrainConfig, model, tokenizer, env: SearchVectorEnv, eval_env: SearchVectorEnv):
    """Three GRPO steps: p follows the trainer's step (0, 1/3, 2/3 of a 0 -> 1 schedule),
    the realised noise with it; the held-out evaluation's env stays noise-free."""
    probabilities = []
    rows = train(cfg, model=model, tokenizer=tokenizer, env=env, eval_env=eval_env,
                 on_step=lambda row: probabilities.append((row["type"], env.envs[0].noise_probability())))
    train_rows = [r for r in rows if r["type"] == "train"]
    assert [p for kind, p in probabilities if kind == "train"] == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert train_rows[0]["noise_rate"] == 0.0 and train_rows[2]["noise_rate"] > 0.0
    assert all(r["searches"] > 0 and 0 < r["masked_token_share"] < 1 for r in train_rows)
    evals = [r for r in rows if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 3] and eval_env.envs[0].noise_probability() == 0.0
    return rows


@pytest.mark.slow
def test_noisy_wiki_curriculum_follows_the_trainer(tmp_path):
    kwargs = dict(tasks="ramp:train", top_k=2, max_turns=2, noise_schedule=LINEAR)
    env = vec("SearchEnvs/NoisyWiki-v0", 4, **kwargs)
    model, tokenizer = searching_tiny_model([env.envs[0].protocol.prompt(t.question) for t in list(env.envs[0].tasks)[:4]])
    trajs = check_rollout_masks(model, tokenizer, vec("SearchEnvs/NoisyWiki-v0", 4, **kwargs))
    assert all(t.noisy and all(t.noisy) for t in trajs)  # p = 1 at the end of the schedule
    eval_env = vec("SearchEnvs/NoisyWiki-v0", 2, **{**kwargs, "tasks": "ramp:test", "noise_schedule": None})
    check_curriculum_run(train_config(tmp_path, "SearchEnvs/NoisyWiki-v0", "noisy", eval_tasks="ramp:test",
                                      eval_episodes=2), model, tokenizer, env, eval_env)


@pytest.mark.slow
def test_sim_search_curriculum_follows_the_trainer(tmp_path):
    """SimSearch-v0's real SimulatedEngine, its simulator LLM a tiny Llama saved to disk;
    the held-out evaluation runs without noise and without the answer in the prompt."""
    sim_tokenizer = word_tokenizer(["Doc 1 : the eiffel tower is 330 metres tall . Doc 2 : curie"])
    sim_dir = tmp_path / "simulator"
    tiny_llama(len(sim_tokenizer), seed=3).save_pretrained(sim_dir)
    sim_tokenizer.save_pretrained(sim_dir)
    kwargs = dict(tasks="ramp:train", top_k=2, max_turns=2, noise_schedule=LINEAR, cache=tmp_path / "sim.sqlite",
                  generator_kwargs={"model_path": str(sim_dir), "device": "cpu"}, engine_kwargs={"max_new_tokens": 12})
    env = vec("SearchEnvs/SimSearch-v0", 4, **kwargs)
    model, tokenizer = searching_tiny_model([env.envs[0].protocol.prompt(t.question) for t in list(env.envs[0].tasks)[:4]])
    check_rollout_masks(model, tokenizer, vec("SearchEnvs/SimSearch-v0", 4, **kwargs))
    eval_env = vec("SearchEnvs/SimSearch-v0", 2, **{**kwargs, "tasks": "ramp:test", "noise_schedule": None,
                                                    "include_answer": False})
    check_curriculum_run(train_config(tmp_path, "SearchEnvs/SimSearch-v0", "sim", eval_tasks="ramp:test",
                                      eval_episodes=2), model, tokenizer, env, eval_env)
    assert env.envs[0].engine.stats["generated"] > 0 and not eval_env.envs[0].engine.include_answer


@pytest.mark.slow
def test_web_trained_run_replays_offline(tmp_path, no_external_network):
    """Train on WebSearch-v0 recording every search from a local Serper-format server; then
    the same run in replay mode with the server stopped gives the same log."""
    web = LocalWeb().start()
    cache = tmp_path / "web.sqlite"

    def env_kwargs(mode: str) -> dict:
        return dict(provider="serper", provider_options={"api_key": KEYS["serper"], "base_url": web.provider_base("serper")},
                    cache=str(cache), mode=mode, tasks=WEB_TASKS, protocol="search_r1", browse=False, top_k=2,
                    max_turns=2)

    env = vec("SearchEnvs/WebSearch-v0", 4, **env_kwargs("record"))
    prompts = [env.envs[0].protocol.prompt(t.question) for t in WEB_TASKS]
    model, tokenizer = searching_tiny_model(prompts)
    trajs = check_rollout_masks(model, tokenizer, env)
    assert any(r["path"] == "/serper/search" and r["body"]["q"] == "eiffel tower" for r in web.state.requests), \
        [(r["path"], r["body"]) for r in web.state.requests]
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def run(mode: str, name: str) -> list[dict]:
        model.load_state_dict(state)
        rows = train(train_config(tmp_path, "SearchEnvs/WebSearch-v0", name, env_kwargs=env_kwargs(mode)),
                     model=model, tokenizer=tokenizer)
        return [{k: v for k, v in r.items() if k not in ("step_seconds", "tokens_per_second")} for r in rows]

    recorded = run("record", "record")
    requests = len(web.state.requests)
    web.stop()
    replayed = run("replay", "replay")
    assert replayed == recorded and all(r["searches"] > 0 for r in recorded)
    assert len(web.state.requests) == requests and no_external_network == []


def test_train_command_takes_env_noise_schedule_and_env_kwargs(capsys):
    args = ["train", "--env", "SearchEnvs/SynthSim-v0", "--env-kwargs", '{"tasks": "train", "noise_kinds": ["false"]}',
            "--noise-schedule", '{"name": "exponential", "p_start": 0, "p_end": 0.5, "base": 4}', "--top-k", "3"]
    cfg = config_from_args(build_parser().parse_args(args))
    assert cfg.env_id == "SearchEnvs/SynthSim-v0"
    assert cfg.env_kwargs == {"tasks": "train", "noise_kinds": ["false"], "top_k": 3,
                              "noise_schedule": {"name": "exponential", "p_start": 0, "p_end": 0.5, "base": 4}}
    for text, expected in (("linear", "linear"), ("0.25", 0.25), ("none", None)):
        cfg = config_from_args(build_parser().parse_args(["train", "--noise-schedule", text]))
        assert cfg.env_kwargs["noise_schedule"] == expected
    assert "noise_schedule" not in config_from_args(build_parser().parse_args(["train"])).env_kwargs
    for bad, message in (("expo", "unknown noise schedule"), ('{"name": "linear", "p_end": 2}', "p_end must be")):
        with pytest.raises(SystemExit) as exit_info:  # argparse's usage error, before any model loads
            main(["train", "--noise-schedule", bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    env = gym.make("SearchEnvs/SynthSim-v0", **cfg.env_kwargs).unwrapped
    assert env.noise_schedule is None


def test_zerosearch_recipe_in_the_docs_parses():
    """docs/zerosearch.md's command for the paper's setting builds a valid config and env kwargs."""
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "zerosearch.md").read_text()
    command = re.search(r"search-envs train --algo grpo --env SearchEnvs/SimSearch-v0.*?runs/zerosearch-3b", doc, re.S)
    cfg = config_from_args(build_parser().parse_args(shlex.split(command.group(0).replace("\\\n", " "))[1:]))
    # ZeroSearch's verl splits 64 x 5 = 320 trajectories into mini-batches of 256 (+ 64): two updates a step
    assert (cfg.total_steps, cfg.questions_per_step, cfg.group_size, cfg.updates_per_step) == (203, 64, 5, 2)
    assert cfg.trajectories_per_step == 320
    assert cfg.env_kwargs["noise_schedule"] == {"name": "exponential", "p_start": 0, "p_end": 0.5, "base": 4}
    assert cfg.env_kwargs["generator"] == "openai" and cfg.make_reward_spec().answer_metric == "f1"
