"""PPO and GRPO for search agents, readable top to bottom (CleanRL style).

One training step:
  1. draw `questions_per_step` training questions, `group_size` episodes each;
  2. play them all at once with token-exact rollouts (agents.rollout): the policy's
     tokens get mask 1, prompt and retrieved/environment tokens mask 0;
  3. score the old policy, the frozen reference and (PPO) the critic on every token;
  4. advantages: GRPO normalises each episode's reward within its question's group
     and adds a k3 KL to the reference to the loss; PPO puts a k1 KL penalty in the
     per-token reward and runs GAE over the policy's tokens;
  5. clipped-ratio updates, token mean over masked tokens, in mini-batches.
`mask_retrieved_tokens=False` trains on the environment tokens too (the ablation).
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from .config import TrainConfig
from .critic import ValueModel
from .objectives import (
    entropy_from_logits,
    grpo_advantages,
    kl_k1,
    kl_k3,
    masked_gae,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_logprobs,
    value_loss,
)
from .rollout import HFGenerator, RolloutStats, Trajectory, VLLMGenerator, collect_rollouts
from search_envs.rewards import exact_match, f1_score


# ----------------------------------------------------------------------------- helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype (autocast). Weights and optimizer state stay float32: at lr 1e-6
    a bfloat16 weight would round most updates away."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def warmup_schedule(optimizer, total_steps: int, ratio: float):
    """verl's constant schedule: linear warm-up over ratio * total_steps, then constant."""
    warmup = int(ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0)


def step_questions(task_ids: list[str], n: int, seed: int, step: int) -> list[str]:
    """The step's questions: consecutive slices of seeded per-epoch permutations, so a
    resumed run draws exactly what the uninterrupted run would have."""
    out, start = [], step * n
    while len(out) < n:
        epoch, offset = divmod(start + len(out), len(task_ids))
        order = np.random.default_rng([seed, epoch]).permutation(len(task_ids))
        out.extend(task_ids[i] for i in order[offset : offset + n - len(out)])
    return out


def curriculum_progress(env, step: int, total_steps: int) -> float:
    """Training progress in the noise schedule's units: the schedule's whole span is
    stretched over the run (step / total_steps of `schedule.total_steps`); a schedule
    without a span gets the raw step."""
    schedule = env.envs[0].noise_schedule
    span = getattr(schedule, "total_steps", None)
    return step / total_steps * float(span) if span else float(step)


def pad_batch(trajs: list[Trajectory], mask_retrieved_tokens: bool, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids and attention [N, T]; loss mask [N, T-1] aligned with the targets ids[:, 1:]."""
    width = max(len(t.input_ids) for t in trajs)
    ids = torch.full((len(trajs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(trajs), width), dtype=torch.long)
    mask = torch.zeros((len(trajs), width), dtype=torch.float32)
    for i, t in enumerate(trajs):
        n = len(t.input_ids)
        ids[i, :n] = torch.as_tensor(t.input_ids)
        attn[i, :n] = 1
        mask[i, :n] = torch.as_tensor(t.loss_mask(mask_retrieved_tokens), dtype=torch.float32)
    return {"ids": ids, "attn": attn, "mask": mask[:, 1:], "lengths": attn.sum(1)}


def forward_logprobs(model, ids, attn, temperature: float, with_entropy: bool = False):
    """Per-target log-probs [B, T-1] (and entropies) of ids[:, 1:] under `model`."""
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]
    logp = token_logprobs(logits, ids[:, 1:], temperature)
    return logp, (entropy_from_logits(logits, temperature) if with_entropy else None)


def micro_batches(rows: list[int], size: int, lengths: torch.Tensor):
    """Slices of `rows`, each with its own width (the longest sequence in it)."""
    for s in range(0, len(rows), size):
        idx = rows[s : s + size]
        yield idx, int(lengths[idx].max())


@torch.no_grad()
def score_tokens(model, batch, rows_per_call: int, device, dtype, temperature: float, values: bool = False):
    """Log-probs (or critic values) for every target position of the batch, no gradient."""
    out = torch.zeros_like(batch["mask"])
    for idx, w in micro_batches(list(range(len(out))), rows_per_call, batch["lengths"]):
        ids, attn = batch["ids"][idx, :w].to(device), batch["attn"][idx, :w].to(device)
        with autocast(device, dtype):
            if values:
                res = model(ids, attn)[:, :-1]
            else:
                res, _ = forward_logprobs(model, ids, attn, temperature)
        out[idx, : w - 1] = res.float().cpu()
    return out


def episode_metrics(trajs: list[Trajectory]) -> dict[str, float]:
    """What one batch of episodes did: reward, EM/F1, searches, lengths, masking, noise."""
    preds = [(t.info.get("prediction"), t.info.get("answers") or []) for t in trajs]
    noisy = [x for t in trajs for x in t.noisy]
    response = sum(t.num_response_tokens for t in trajs)
    metrics = {
        "reward": float(np.mean([t.reward for t in trajs])),
        "em": float(np.mean([exact_match(p, a) for p, a in preds])),
        "f1": float(np.mean([f1_score(p, a) for p, a in preds])),
        "searches": float(np.mean([t.info.get("num_searches", 0) for t in trajs])),
        "turns": float(np.mean([len(t.actions) for t in trajs])),
        "response_length": float(np.mean([t.num_policy_tokens for t in trajs])),
        "masked_token_share": 1.0 - sum(t.num_policy_tokens for t in trajs) / max(1, response),
        "answered": float(np.mean([p is not None for p, _ in preds])),
        # the env's format check: a well-formed answer after well-formed actions only
        "format_rate": float(np.mean([bool(t.info.get("format_ok")) and p is not None
                                      for t, (p, _) in zip(trajs, preds)])),
        "context_exhausted": float(np.mean([t.context_exhausted for t in trajs])),
    }
    if noisy:
        metrics["noise_rate"] = float(np.mean(noisy))
    return metrics


def actor_loss(cfg: TrainConfig, logp, entropy, old_logp, ref_logp, advantages, mask, denom=None):
    """Clipped surrogate - entropy bonus (+ GRPO's k3 KL to the reference), token means over `mask`.
    Returns (loss, its parts for logging)."""
    pg, clip_frac = policy_loss(logp, old_logp, advantages, mask, cfg.clip_ratio, denom)
    ent = masked_mean(entropy, mask, denom)
    parts = {"pg_loss": pg, "entropy": ent, "clip_frac": clip_frac}
    loss = pg - cfg.entropy_coef * ent
    if cfg.algo == "grpo" and ref_logp is not None and cfg.kl_coef > 0:
        parts["kl_loss"] = masked_mean(kl_k3(logp, ref_logp), mask, denom)
        loss = loss + cfg.kl_coef * parts["kl_loss"]
    return loss, parts


def make_generator(cfg: TrainConfig, model, tokenizer, stop_strings, model_path: str | None, temperature=None):
    temperature = cfg.temperature if temperature is None else temperature
    if cfg.rollout_backend == "vllm":
        dtype = "bfloat16" if resolve_dtype(cfg.dtype, resolve_device(cfg.device)) == torch.bfloat16 else "float32"
        return VLLMGenerator(model_path, tokenizer, stop_strings, temperature, cfg.top_p, dtype,
                             cfg.vllm_gpu_memory_utilization, cfg.max_total_length)
    return HFGenerator(model, tokenizer, stop_strings, temperature, cfg.top_p, cfg.rollout_batch_size)


def plot_curves(log_path: Path, png_path: Path) -> Path | None:
    """A PNG of the training curves (and held-out EM) from the JSONL log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("type") == "train"]
    evals = [r for r in rows if r.get("type") == "eval"]
    if not train:
        return None
    keys = ["reward", "em", "kl", "response_length", "searches", "masked_token_share"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, key in zip(axes.flat, keys):
        ax.plot([r["step"] for r in train], [r.get(key, float("nan")) for r in train], label="train")
        if key in ("reward", "em") and evals:
            ax.plot([r["step"] for r in evals], [r.get(key, float("nan")) for r in evals], "o-",
                    label="held-out (greedy)")
            ax.legend()
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def load_policy_model(cfg: TrainConfig, device: torch.device):
    """(model, tokenizer, path) of the policy to train: `cfg.init` (a checkpoint, e.g. from
    SFT) when set, else `cfg.model`; float32 master weights."""
    from search_envs.models import load_causal_lm, resolve_model

    from .checkpoint import resolve_actor_dir

    path = str(resolve_actor_dir(cfg.init)) if cfg.init else resolve_model(cfg.model)
    model, tokenizer = load_causal_lm(path, device=str(device), dtype=torch.float32)
    return model, tokenizer, path


def rollout_options(cfg: TrainConfig) -> dict[str, Any]:
    return dict(use_chat_template=cfg.use_chat_template, max_start_length=cfg.max_start_length,
                max_response_length=cfg.max_response_length, max_obs_length=cfg.max_obs_length,
                max_total_length=cfg.max_total_length)


def evaluate_in_training(generator, tokenizer, env, task_ids: list[str], cfg: TrainConfig) -> dict[str, float]:
    """Greedy held-out episodes with the current weights, through the same rollout code."""
    results: list[Trajectory] = []
    for s in range(0, len(task_ids), env.num_envs):
        chunk = task_ids[s : s + env.num_envs]
        chunk = chunk + [chunk[-1]] * (env.num_envs - len(chunk))
        trajs = collect_rollouts(generator, tokenizer, env, chunk, list(range(len(chunk))), seed=cfg.seed,
                                 **rollout_options(cfg))
        results.extend(trajs[: len(task_ids[s : s + env.num_envs])])
    metrics = episode_metrics(results)
    return {k: metrics[k] for k in ("reward", "em", "f1", "searches", "response_length", "answered",
                                             "format_rate")}


# ----------------------------------------------------------------------------- training
def train(
    cfg: TrainConfig,
    *,
    model=None,
    tokenizer=None,
    env=None,
    eval_env=None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run `cfg`; returns the JSONL log rows written by this call.

    model/tokenizer: an HF causal LM and its tokenizer (default: load cfg.model).
    env / eval_env: `SearchVectorEnv`s with questions_per_step * group_size and any
    number of sub-envs (default: `make_vec(cfg.env_id, ...)`).
    """
    from search_envs.vector import make_vec

    if cfg.algo == "sft":
        from .sft import train_sft

        return train_sft(cfg, model=model, tokenizer=tokenizer, eval_env=eval_env, on_step=on_step)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    is_ppo = cfg.algo == "ppo"

    # --- models: actor (float32 master weights), frozen reference, critic ---------------------------
    model_path = None
    if model is None:
        model, tokenizer, model_path = load_policy_model(cfg, device)
    elif cfg.init:
        raise ValueError("pass either a model object or cfg.init, not both")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device=device, dtype=torch.float32)
    ref_model = None
    if cfg.kl_coef > 0:
        ref_model = copy.deepcopy(model).requires_grad_(False).eval()
        if dtype != torch.float32:
            ref_model.to(dtype)
    critic = None
    if is_ppo:
        critic = ValueModel.from_pretrained(cfg.critic_model) if cfg.critic_model else ValueModel.from_causal_lm(model)
        critic.to(device=device, dtype=torch.float32)

    checkpoint = latest_checkpoint(out_dir) if cfg.resume else None
    if checkpoint is not None:
        model = type(model).from_pretrained(checkpoint / "actor", dtype=torch.float32).to(device)
        if is_ppo:
            critic = ValueModel.from_pretrained(checkpoint / "critic", dtype=torch.float32).to(device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if critic is not None:
            critic.gradient_checkpointing_enable()
    model.train()

    actor_opt = torch.optim.AdamW(model.parameters(), lr=cfg.actor_lr, weight_decay=cfg.weight_decay)
    actor_sched = warmup_schedule(actor_opt, cfg.total_steps, cfg.actor_warmup_ratio)
    critic_opt = critic_sched = None
    if critic is not None:
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, weight_decay=cfg.weight_decay)
        critic_sched = warmup_schedule(critic_opt, cfg.total_steps, cfg.critic_warmup_ratio)
    start_step = 0
    if checkpoint is not None:
        state = load_trainer_state(checkpoint)
        actor_opt.load_state_dict(state["actor_opt"])
        actor_sched.load_state_dict(state["actor_sched"])
        if critic_opt is not None:
            critic_opt.load_state_dict(state["critic_opt"])
            critic_sched.load_state_dict(state["critic_sched"])
        start_step = int(state["step"])

    # --- environments ---------------------------------------------------------------------------------
    env_kwargs = {"max_turns": cfg.max_turns, **cfg.env_kwargs}
    if cfg.reward_spec is not None:
        env_kwargs["reward"] = cfg.make_reward_spec()
    n_envs = cfg.questions_per_step * cfg.group_size
    env = env if env is not None else make_vec(cfg.env_id, n_envs, **env_kwargs)
    if env.num_envs != n_envs:
        raise ValueError(f"the env has {env.num_envs} sub-envs; questions_per_step * group_size = {n_envs}")
    train_ids = [t.id for t in env.envs[0].tasks]
    stop_strings = env.envs[0].protocol.stop_strings
    eval_ids: list[str] = []
    if eval_env is None and cfg.eval_tasks and cfg.eval_episodes > 0:
        eval_env = make_vec(cfg.env_id, min(cfg.eval_episodes, 64), **{**env_kwargs, "tasks": cfg.eval_tasks})
    if eval_env is not None:
        from search_envs.policies.base import episode_plan

        eval_tasks = eval_env.envs[0].tasks
        eval_ids = [eval_tasks[i].id for i in episode_plan(len(eval_tasks), cfg.eval_episodes, cfg.seed)]
        if set(eval_ids) & set(train_ids):
            raise ValueError("held-out evaluation tasks overlap the training tasks")
    generator = make_generator(cfg, model, tokenizer, stop_strings, model_path)
    greedy = HFGenerator(model, tokenizer, stop_strings, 0.0, batch_size=cfg.rollout_batch_size)

    log_path = out_dir / "log.jsonl"
    log_rows: list[dict[str, Any]] = []
    if not cfg.resume and (log_path.exists() or latest_checkpoint(out_dir) is not None):
        raise ValueError(f"{out_dir} holds a previous run: pass --resume, or choose another --output-dir")
    if log_path.exists():  # resuming: keep what the checkpoint covers, drop what will be redone
        kept = [line for line in log_path.read_text().splitlines()
                if line.strip() and start_step > 0 and json.loads(line)["step"] <= start_step]  # step-0 eval too
        log_path.write_text("".join(line + "\n" for line in kept))

    def log(row: dict[str, Any]) -> None:
        log_rows.append(row)
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if on_step is not None:
            on_step(row)

    def save(step: int) -> None:
        state = {"actor_opt": actor_opt.state_dict(), "actor_sched": actor_sched.state_dict()}
        if critic_opt is not None:
            state.update(critic_opt=critic_opt.state_dict(), critic_sched=critic_sched.state_dict())
        save_checkpoint(out_dir, step, model, tokenizer, cfg.to_dict(), state, critic)
        plot_curves(log_path, out_dir / "curves.png")

    def evaluate(step: int) -> None:
        if eval_ids:
            greedy.sync(model)
            with autocast(device, dtype):
                log({"type": "eval", "step": step, **evaluate_in_training(greedy, tokenizer, eval_env, eval_ids, cfg)})

    if start_step == 0:
        evaluate(0)
    bar = tqdm(range(start_step, cfg.total_steps), initial=start_step, total=cfg.total_steps,
               desc=f"{cfg.algo} steps", disable=not cfg.progress)
    for step in bar:
        t_step = time.perf_counter()
        # 1. questions and rollouts (a noise curriculum follows the training progress)
        env.set_progress(curriculum_progress(env, step, cfg.total_steps))
        questions = step_questions(train_ids, cfg.questions_per_step, cfg.seed, step)
        task_ids = [q for q in questions for _ in range(cfg.group_size)]
        groups = [g for g in range(len(questions)) for _ in range(cfg.group_size)]
        generator.sync(model)
        stats = RolloutStats()
        with autocast(device, dtype):
            trajs = collect_rollouts(generator, tokenizer, env, task_ids, groups, seed=cfg.seed + step * n_envs,
                                     stats=stats, **rollout_options(cfg))

        # 2. score every token: old policy, reference, critic
        batch = pad_batch(trajs, cfg.mask_retrieved_tokens, tokenizer.pad_token_id)
        mask = batch["mask"]
        model.eval()
        old_logp = score_tokens(model, batch, cfg.micro_batch_size, device, dtype, cfg.temperature)
        model.train()
        ref_logp = (score_tokens(ref_model, batch, cfg.micro_batch_size, device, dtype, cfg.temperature)
                    if ref_model is not None else old_logp.clone())
        scores = torch.tensor([t.reward for t in trajs], dtype=torch.float32)

        # 3. advantages
        if is_ppo:
            old_values = score_tokens(critic, batch, cfg.micro_batch_size, device, dtype, 1.0, values=True)
            token_rewards = -cfg.kl_coef * kl_k1(old_logp, ref_logp) * mask
            last = (mask * torch.arange(mask.shape[1])).argmax(1)  # the last trained token of each episode
            token_rewards[torch.arange(len(trajs)), last] += scores * (mask.sum(1) > 0)
            advantages, returns = masked_gae(token_rewards, old_values, mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, mask)
            kl_value = masked_mean(kl_k1(old_logp, ref_logp), mask).item()
        else:
            advantages = grpo_advantages(scores.tolist(), groups)[:, None] * mask
            kl_value = masked_mean(kl_k3(old_logp, ref_logp), mask).item()

        # 4. clipped updates in mini-batches (token mean over each mini-batch's masked tokens)
        rows_per_mini = cfg.mini_batch_size * cfg.group_size
        losses: dict[str, list[float]] = {}
        for _ in range(cfg.ppo_epochs):
            for m0 in range(0, len(trajs), rows_per_mini):
                rows = list(range(m0, min(m0 + rows_per_mini, len(trajs))))
                denom = mask[rows].sum().clamp(min=1.0)
                totals: dict[str, float] = {}
                actor_opt.zero_grad(set_to_none=True)
                if critic_opt is not None:
                    critic_opt.zero_grad(set_to_none=True)
                for idx, w in micro_batches(rows, cfg.micro_batch_size, batch["lengths"]):
                    ids, attn = batch["ids"][idx, :w].to(device), batch["attn"][idx, :w].to(device)
                    m = mask[idx, : w - 1].to(device)
                    with autocast(device, dtype):
                        logp, entropy = forward_logprobs(model, ids, attn, cfg.temperature, with_entropy=True)
                    loss, parts = actor_loss(cfg, logp, entropy, old_logp[idx, : w - 1].to(device),
                                             ref_logp[idx, : w - 1].to(device) if ref_model is not None else None,
                                             advantages[idx, : w - 1].to(device), m, denom)
                    loss.backward()
                    if critic is not None:
                        with autocast(device, dtype):
                            values = critic(ids, attn)[:, :-1].float()
                        parts["value_loss"] = value_loss(values, old_values[idx, : w - 1].to(device),
                                                         returns[idx, : w - 1].to(device), m, cfg.value_clip, denom)
                        parts["value_loss"].backward()
                    parts["clip_frac"] = parts["clip_frac"] * m.sum() / denom  # a mean over this micro-batch
                    for k, v in parts.items():  # micro-batch parts of the mini-batch's token means
                        totals[k] = totals.get(k, 0.0) + float(v.item())
                losses.setdefault("grad_norm", []).append(
                    float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)))
                actor_opt.step()
                if critic_opt is not None:
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip)
                    critic_opt.step()
                for k, v in totals.items():
                    losses.setdefault(k, []).append(v)
        actor_sched.step()
        if critic_sched is not None:
            critic_sched.step()

        # 5. log, evaluate, checkpoint
        row = {"type": "train", "step": step + 1, **episode_metrics(trajs), "kl": kl_value,
               "lr": actor_sched.get_last_lr()[0],
               "tokens_per_second": stats.generated_tokens / max(stats.generate_seconds, 1e-9),
               "generated_tokens": stats.generated_tokens, "step_seconds": time.perf_counter() - t_step}
        row.update({k: float(np.mean(v)) for k, v in losses.items()})
        if not all(math.isfinite(v) for v in row.values() if isinstance(v, float)):
            raise FloatingPointError(f"non-finite metrics at step {step + 1}: {row}")
        log(row)
        bar.set_postfix(reward=f"{row['reward']:.3f}", kl=f"{kl_value:.4f}", len=f"{row['response_length']:.0f}")
        done = step + 1 == cfg.total_steps
        if eval_ids and ((step + 1) % cfg.eval_every == 0 or done):
            evaluate(step + 1)
        if (step + 1) % cfg.save_every == 0 or done:
            save(step + 1)
    bar.close()
    return log_rows
