"""Cold-start SFT: `collect` writes trajectories whose tokens and masks are exactly what
the RL rollouts build; SFT lowers the loss on policy tokens only; its checkpoint starts
GRPO through --init."""

from __future__ import annotations

import json

import pytest
import torch

from search_envs.agents.config import TrainConfig
from search_envs.agents.rollout import collect_rollouts, tokenize_episode
from search_envs.agents.sft import read_trajectories, sft_loss, tokenize_rows, train_sft
from search_envs.agents.tiny import tiny_llama, torch_threads, word_tokenizer
from search_envs.agents.train import pad_batch, rollout_options
from search_envs.commands.collect import collect
from search_envs.policies import make_policy
from search_envs.registration import make_synth_env
from search_envs.synthworld import WorldConfig, generate_world
from search_envs.vector import SearchVectorEnv

WORLD = {"num_entities": 60, "passages_per_entity": 1}


@pytest.fixture(autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


class PolicyAsGenerator:
    """Plays a text policy inside `collect_rollouts`: its actions' token ids are 'generated'."""

    def __init__(self, policy, vec, tokenizer):
        self.policy, self.vec, self.tokenizer = policy, vec, tokenizer
        self.playing = list(range(vec.num_envs))  # one collect_rollouts call
        policy.bind(vec.envs[0])

    def sync(self, model):
        pass

    def generate(self, contexts, max_new_tokens):
        # finished sub-envs are auto-reset one step later: follow the first episodes only
        self.playing = [i for i in self.playing if not self.vec.envs[i].episode.done]
        live = [self.vec.envs[i] for i in self.playing]
        assert len(live) == len(contexts)
        actions = self.policy.act([list(e.episode.transcript) for e in live])
        return [self.tokenizer.encode(a, add_special_tokens=False) for a in actions]


def tiny_tokenizer():
    world = generate_world(WorldConfig(**WORLD))
    env = make_synth_env(world=WORLD, tasks="all", kinds=None)
    texts = [p["text"] + " " + p["title"] for p in world.passages] + [t.question for t in world.all_tasks]
    texts += [env.protocol.prompt(""), env.protocol.error_observation("x"), "Doc 1(Title: \"\") unknown"]
    return word_tokenizer(texts)


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "trajs.jsonl"
    env = make_synth_env(world=WORLD, tasks="train", kinds=("single", "chain"), top_k=2, max_turns=4)
    stats = collect(make_policy("synth_teacher"), env, 24, out, only_correct=True, progress=False)
    assert stats["written"] >= 20 and stats["searches"] >= 1.0
    return out


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_collected_tokens_and_masks_match_the_rl_rollout(collected, which):
    if which == "tiny":
        tokenizer = tiny_tokenizer()
    else:
        from transformers import AutoTokenizer

        from search_envs.models import default_model_path

        tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    rows = read_trajectories(collected)
    cfg = TrainConfig(max_obs_length=40, max_response_length=64, use_chat_template=which == "smollm2")
    vec = SearchVectorEnv([make_synth_env(world=WORLD, tasks="train", kinds=("single", "chain"), top_k=2, max_turns=4)
                           for _ in range(len(rows))])
    gen = PolicyAsGenerator(make_policy("synth_teacher"), vec, tokenizer)
    trajs = collect_rollouts(gen, tokenizer, vec, [r["id"] for r in rows], list(range(len(rows))),
                             **rollout_options(cfg))
    for row, traj in zip(rows, trajs):
        mine = tokenize_episode(tokenizer, row["transcript"], **rollout_options(cfg))
        assert mine.input_ids == traj.input_ids and mine.policy_mask == traj.policy_mask
        assert mine.prompt_length == traj.prompt_length
        assert traj.reward == row["reward"] == 1.0
        assert sum(traj.policy_mask) < len(traj.policy_mask) - traj.prompt_length  # observations are masked
    assert any(len(t.actions) >= 3 for t in trajs)  # multi-hop episodes are in there


def policy_and_env_nll(model, trajs, pad_id):
    batch = pad_batch(trajs, True, pad_id)
    with torch.no_grad():
        logits = model(input_ids=batch["ids"], attention_mask=batch["attn"]).logits[:, :-1]
        logp = torch.log_softmax(logits, -1).gather(-1, batch["ids"][:, 1:, None])[..., 0]
    policy = batch["mask"]
    env = (batch["attn"][:, 1:].float() - policy) * (torch.arange(policy.shape[1]) >= torch.tensor(
        [t.prompt_length - 1 for t in trajs])[:, None]).float()
    return float(-(logp * policy).sum() / policy.sum()), float(-(logp * env).sum() / env.sum())


def test_sft_lowers_the_loss_on_policy_tokens_only(collected, tmp_path):
    tokenizer = tiny_tokenizer()
    results = {}
    for mask in (True, False):
        model = tiny_llama(len(tokenizer), hidden_size=32, seed=0)
        cfg = TrainConfig(algo="sft", data=str(collected), sft_epochs=10, sft_batch_size=8, micro_batch_size=8,
                          sft_lr=1e-2, actor_warmup_ratio=0.0, use_chat_template=False, max_obs_length=60,
                          eval_tasks=None, device="cpu", progress=False, mask_retrieved_tokens=mask,
                          output_dir=str(tmp_path / f"mask{mask}"))
        trajs = tokenize_rows(read_trajectories(collected), tokenizer, cfg)
        before = policy_and_env_nll(model, trajs, tokenizer.pad_token_id)
        rows = train_sft(cfg, model=model, tokenizer=tokenizer)
        after = policy_and_env_nll(model, trajs, tokenizer.pad_token_id)
        results[mask] = (before, after, rows)
    (p0, e0), (p1, e1), rows = results[True]
    assert p1 < 0.6 * p0  # policy tokens learned
    losses = [r["loss"] for r in rows if r["type"] == "sft"]
    assert losses[-1] < losses[0]
    # the loss is the NLL of the policy tokens alone
    batch = pad_batch(tokenize_rows(read_trajectories(collected), tokenizer, TrainConfig(use_chat_template=False,
                      max_obs_length=60)), True, tokenizer.pad_token_id)
    model = tiny_llama(len(tokenizer), hidden_size=32, seed=0)
    with torch.no_grad():
        loss = sft_loss(model, batch, list(range(4)), "cpu", batch["mask"][:4].sum())
    assert loss.item() == pytest.approx(policy_and_env_nll(model, tokenize_rows(
        read_trajectories(collected)[:4], tokenizer, TrainConfig(use_chat_template=False, max_obs_length=60)),
        tokenizer.pad_token_id)[0], rel=1e-4)
    # the ablation trains on the retrieved text too: it learns the observations far better
    (_, e0_all), (_, e1_all), _ = results[False]
    assert (e0_all - e1_all) > 2 * (e0 - e1)


def test_sft_checkpoint_starts_grpo_with_init(collected, tmp_path):
    from search_envs.cli import main

    tokenizer = tiny_tokenizer()
    model_dir = tmp_path / "tiny"
    tiny_llama(len(tokenizer), hidden_size=32, seed=0).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    common = ["--model", str(model_dir), "--env", "SearchEnvs/SynthWorld-v0", "--env-kwargs",
              json.dumps({"world": WORLD, "tasks": "train", "top_k": 2}), "--no-use-chat-template",
              "--device", "cpu", "--no-progress", "--eval-tasks", "synth:test:num_entities=60,passages_per_entity=1",
              "--eval-episodes", "4", "--max-obs-length", "60", "--max-response-length", "12"]
    assert main(["train", "--algo", "sft", "--data", str(collected), "--sft-lr", "3e-3", "--sft-epochs", "1",
                 "--output-dir", str(tmp_path / "sft"), *common]) == 0
    assert main(["train", "--algo", "grpo", "--init", str(tmp_path / "sft"), "--steps", "1", "--questions-per-step",
                 "2", "--group-size", "2", "--mini-batch-size", "2", "--actor-lr", "0", "--kl-coef", "0",
                 "--entropy-coef", "0", "--no-gradient-checkpointing", "--output-dir", str(tmp_path / "grpo"),
                 *common]) == 0
    from transformers import AutoModelForCausalLM

    from search_envs.agents.checkpoint import resolve_actor_dir

    sft = AutoModelForCausalLM.from_pretrained(resolve_actor_dir(tmp_path / "sft")).state_dict()
    grpo = AutoModelForCausalLM.from_pretrained(resolve_actor_dir(tmp_path / "grpo")).state_dict()
    fresh = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    key = "model.embed_tokens.weight"
    assert torch.equal(sft[key], grpo[key]) and not torch.equal(sft[key], fresh[key])
    evals = [json.loads(x) for x in (tmp_path / "sft" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["type"] == "eval"] == [0, evals[-1]["step"]]
