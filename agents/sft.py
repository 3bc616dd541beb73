"""Cold-start SFT (as R1-Searcher++, SimpleDeepSearcher and WebDancer do before RL):
fine-tune on collected trajectories, on the policy's tokens only.

Each trajectory (`search-envs collect`) is tokenised by `rollout.tokenize_episode`,
exactly as the RL rollouts build their contexts, and the loss is the token mean of
the negative log-likelihood over the same mask the RL losses use (`pad_batch`:
policy tokens; every token after the prompt with `mask_retrieved_tokens=False`).
The checkpoint it writes starts GRPO/PPO with `--init`.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import latest_checkpoint, save_checkpoint
from .config import TrainConfig
from .objectives import masked_mean, token_logprobs
from .rollout import HFRolloutGenerator, Trajectory, tokenize_episode


def read_trajectories(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a `search-envs collect` file (each needs a `transcript`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trajectories file {str(path)!r} (write one with `search-envs collect`)")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not a JSON line ({exc})") from None
        if not isinstance(row, dict) or not isinstance(row.get("transcript"), list):
            raise ValueError(f"{path}:{lineno}: no 'transcript' (write the file with `search-envs collect`)")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no trajectories")
    return rows


def tokenize_rows(rows: list[dict[str, Any]], tokenizer, cfg: TrainConfig) -> list[Trajectory]:
    from .train import rollout_options

    return [tokenize_episode(tokenizer, row["transcript"], task_id=row.get("id", ""), reward=row.get("reward", 0.0),
                             **rollout_options(cfg)) for row in rows]


def sft_loss(model, batch: dict[str, torch.Tensor], rows: list[int], device, denom: torch.Tensor) -> torch.Tensor:
    """Sum over `rows` of the masked NLL, divided by `denom` (the step's masked token count)."""
    width = int(batch["lengths"][rows].max())
    ids, attn = batch["ids"][rows, :width].to(device), batch["attn"][rows, :width].to(device)
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]
    logp = token_logprobs(logits, ids[:, 1:], 1.0)
    return -masked_mean(logp, batch["mask"][rows, : width - 1].to(device), denom)


def train_sft(
    cfg: TrainConfig,
    *,
    model=None,
    tokenizer=None,
    eval_env=None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune on `cfg.data` for `cfg.sft_epochs`; log to output_dir/log.jsonl
    (type "sft": loss per step; type "eval": held-out greedy episodes when
    `eval_tasks` is set), save a checkpoint at the end. Returns the log rows."""
    from .train import evaluate_in_training, pad_batch, resolve_device, warmup_schedule

    out_dir = Path(cfg.output_dir)
    if (out_dir / "log.jsonl").exists() or latest_checkpoint(out_dir) is not None:
        raise ValueError(f"{out_dir} holds a previous run: choose another --output-dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    device = resolve_device(cfg.device)
    if model is None:
        from .train import load_policy_model

        model, tokenizer, _ = load_policy_model(cfg, device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device=device, dtype=torch.float32)

    trajs = tokenize_rows(read_trajectories(cfg.data), tokenizer, cfg)
    batch = pad_batch(trajs, cfg.mask_retrieved_tokens, tokenizer.pad_token_id)
    steps_per_epoch = math.ceil(len(trajs) / cfg.sft_batch_size)
    total = steps_per_epoch * cfg.sft_epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr, weight_decay=cfg.weight_decay)
    schedule = warmup_schedule(optimizer, total, cfg.actor_warmup_ratio)

    eval_ids: list[str] = []
    if eval_env is None and cfg.eval_tasks and cfg.eval_episodes > 0:
        from search_envs.vector import make_vec

        env_kwargs = {"max_turns": cfg.max_turns, **cfg.env_kwargs, "tasks": cfg.eval_tasks}
        eval_env = make_vec(cfg.env_id, min(cfg.eval_episodes, 64), **env_kwargs)
    if eval_env is not None:
        from search_envs.policies.base import episode_plan

        tasks = eval_env.envs[0].tasks
        eval_ids = [tasks[i].id for i in episode_plan(len(tasks), cfg.eval_episodes, cfg.seed)]
        greedy = HFRolloutGenerator(model, tokenizer, eval_env.envs[0].protocol.stop_strings, 0.0,
                             batch_size=cfg.rollout_batch_size)

    log_rows: list[dict[str, Any]] = []

    def log(row: dict[str, Any]) -> None:
        log_rows.append(row)
        with open(out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if on_step is not None:
            on_step(row)

    def evaluate(step: int) -> None:
        if eval_ids:
            greedy.sync(model)
            log({"type": "eval", "step": step, **evaluate_in_training(greedy, tokenizer, eval_env, eval_ids, cfg)})

    evaluate(0)
    model.train()
    bar = tqdm(range(total), desc="sft steps", disable=not cfg.progress)
    for step in bar:
        t0 = time.perf_counter()
        epoch, offset = divmod(step, steps_per_epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(trajs))
        rows = [int(r) for r in order[offset * cfg.sft_batch_size : (offset + 1) * cfg.sft_batch_size]]
        denom = batch["mask"][rows].sum().clamp(min=1.0)
        optimizer.zero_grad(set_to_none=True)
        total_loss = 0.0
        for s in range(0, len(rows), cfg.micro_batch_size):
            loss = sft_loss(model, batch, rows[s : s + cfg.micro_batch_size], device, denom)
            loss.backward()
            total_loss += float(loss.item())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        optimizer.step()
        schedule.step()
        row = {"type": "sft", "step": step + 1, "epoch": epoch, "loss": total_loss, "grad_norm": grad_norm,
               "tokens": int(denom.item()), "lr": schedule.get_last_lr()[0], "step_seconds": time.perf_counter() - t0}
        if not math.isfinite(total_loss):
            raise FloatingPointError(f"non-finite SFT loss at step {step + 1}")
        log(row)
        bar.set_postfix(loss=f"{total_loss:.3f}")
        if eval_ids and (step + 1) % cfg.eval_every == 0 and step + 1 < total:
            evaluate(step + 1)
    bar.close()
    evaluate(total)
    save_checkpoint(out_dir, total, model, tokenizer, cfg.to_dict(), {"sft_opt": optimizer.state_dict()})
    return log_rows
