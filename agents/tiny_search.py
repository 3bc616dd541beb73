"""The tiny agent that learns to search: a ~0.15M-parameter Llama trained from scratch on
single-hop SynthWorld (invented facts, so only search answers them), through the same
env, rollouts, masks, SFT and GRPO code as any model.

`learn_to_search(out_dir)` runs: held-out evaluation of the untrained model; cold-start
SFT on `synth_teacher` trajectories of the training entities; GRPO with Search-R1's EM
reward from the SFT checkpoint; held-out greedy EM and searches per episode throughout
(test entities are disjoint from training ones); and the best policy that never searches
(`majority`) on the same questions. Used by benchmarks/tiny_search.py, `make demo` and
tests/test_tiny_search.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORLD = {"num_entities": 1000, "passages_per_entity": 1, "alias_rate": 0.0, "surname_pool": 40, "num_cities": 40}
"""~640 people, every fact of an entity in one passage; 40 surnames, so every word of a
held-out name also occurs in training names (a word-level model can copy it); 40 cities, so
every birthplace is some training question's answer (a tiny model writes only words it was
trained to write: with SynthWorld's default ~200 cities held-out EM stops at 0.72,
agents/README.md)."""
RELATIONS = ("birthplace",)
"""Single-hop questions: where was X born? (one of 40 invented cities)."""
TAGS = ("<search>", "</search>", "<answer>", "</answer>", "<information>", "</information>", "<think>", "</think>")

SAME_KERNELS_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
"""torch's own vector kernels and MKL's both capped at AVX2. Training from scratch is chaotic:
the last-bit rounding of AVX-512 kernels against AVX2 ones sends the same seed to a different
model (held-out EM 1.000 against 0.729 for the CI test's run, measured on one machine by
switching ATEN_CPU_CAPABILITY alone). Capped, every x86-64 machine with AVX2 runs the same
kernels, so the same seed prints the same figures; other CPUs (ARM) still differ."""


def pin_cpu_kernels() -> bool:
    """Set SAME_KERNELS_ENV (where the user has not set them) before torch first runs.

    Returns False, setting nothing, if torch is already imported: its kernels are chosen by then."""
    import os
    import sys

    if "torch" in sys.modules:
        return False
    for key, value in SAME_KERNELS_ENV.items():
        os.environ.setdefault(key, value)
    return True


@dataclass
class TinySearchRun:
    """The knobs of one run (model size, SFT and GRPO lengths); defaults take a few minutes of one CPU core."""

    seed: int = 0
    world: dict[str, Any] = field(default_factory=lambda: dict(WORLD))
    relations: tuple[str, ...] = RELATIONS
    top_k: int = 1
    """One result per search: the answer is the one city in it when the query names the right person."""
    tokenizer: str = "word"
    """"word" (`tiny.word_tokenizer`: every word one token) or "bpe" (`tiny.bpe_tokenizer`, vocab_size)."""
    vocab_size: int = 400
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    """A ~0.15M-parameter Llama (most of it the word embeddings)."""
    sft_epochs: int = 60
    sft_lr: float = 1e-2
    grpo_steps: int = 20
    grpo_lr: float = 5e-4
    questions_per_step: int = 16
    group_size: int = 4
    eval_episodes: int = 64
    eval_every: int = 50
    prompt_tokens: int = 24
    """max_start_length: the prompt is cut from the left to its last tokens (the question and
    the end of the instructions), as Search-R1's data.max_start_length does, to keep a CPU run short."""
    sft_batch_size: int = 32
    """Held-out evaluations every this many SFT steps (GRPO: every grpo_steps // 4 steps)."""


def env_kwargs(run: TinySearchRun, split: str) -> dict[str, Any]:
    return {"world": run.world, "tasks": split, "kinds": ("single",), "relations": run.relations,
            "top_k": run.top_k, "max_turns": 3}


def make_tokenizer(run: TinySearchRun):
    """A tokenizer over the world's passages, its questions and the protocol's text."""
    from search_envs.protocols import make_protocol
    from search_envs.synthworld import WorldConfig, generate_world

    from .tiny import bpe_tokenizer, word_tokenizer

    world = generate_world(WorldConfig(**run.world))  # the envs' world (run.seed is the training seed)
    protocol = make_protocol("search_r1")
    docs = [f'Doc 1(Title: "{p["title"]}") {p["text"]}' for p in world.passages]
    texts = docs + [t.question for t in world.all_tasks] + [protocol.prompt(""), "<answer> unknown </answer>"] * 20
    if run.tokenizer == "word":
        return word_tokenizer(texts + [protocol.error_observation("x")], TAGS)
    return bpe_tokenizer(texts, run.vocab_size, TAGS)


def _config(run: TinySearchRun, out_dir: Path, **overrides):
    from .config import TrainConfig

    base = dict(env_id="SearchEnvs/SynthWorld-v0", env_kwargs=env_kwargs(run, "train"),
                eval_tasks="synth:test", eval_episodes=run.eval_episodes, use_chat_template=False,
                device="cpu", dtype="float32", gradient_checkpointing=False, torch_threads=1,
                max_turns=3, max_response_length=16, max_obs_length=120, max_total_length=512,
                max_start_length=run.prompt_tokens,
                rollout_batch_size=64, micro_batch_size=32, seed=run.seed, output_dir=str(out_dir))
    base.update(overrides)
    return TrainConfig(**base)


def _vec(run: TinySearchRun, split: str, n: int):
    from search_envs.registration import make_synth_env
    from search_envs.vector import SearchVectorEnv

    first = make_synth_env(**env_kwargs(run, split))
    envs = [first] + [make_synth_env(**env_kwargs(run, split)) for _ in range(n - 1)]
    return SearchVectorEnv(envs, engine=first.engine)


def never_search_em(run: TinySearchRun) -> float:
    """EM of `majority` (the best policy that never searches) on the held-out questions."""
    from search_envs.policies import make_policy, run_episodes
    from search_envs.registration import make_synth_env

    env = make_synth_env(**env_kwargs(run, "test"))
    records = run_episodes(make_policy("majority"), env, n=len(env.tasks), progress=False)
    return sum(r.em for r in records) / len(records)


def learn_to_search(out_dir: str | Path, run: TinySearchRun | None = None,
                    on_row: Callable[[dict[str, Any]], None] | None = None, progress: bool = False) -> dict[str, Any]:
    """Train the tiny agent (SFT, then GRPO) and return the held-out curve and the summary.

    Writes out_dir/sft, out_dir/grpo (logs, checkpoints), out_dir/curve.json and
    out_dir/curve.png. `on_row` sees every log row (the demo prints them)."""
    import torch

    from search_envs.commands.collect import collect
    from search_envs.policies import make_policy
    from search_envs.registration import make_synth_env

    from .tiny import tiny_llama, torch_threads
    from .train import train

    run = run or TinySearchRun()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tokenizer = make_tokenizer(run)
    model = tiny_llama(len(tokenizer), hidden_size=run.hidden_size, layers=run.layers, heads=run.heads,
                       seed=run.seed, max_positions=1024)
    rows: list[dict[str, Any]] = []

    def record(phase: str, offset: int):
        def hook(row: dict[str, Any]) -> None:
            row = {**row, "phase": phase, "global_step": offset + row["step"]}
            rows.append(row)
            if on_row is not None:
                on_row(row)
        return hook

    train_env = make_synth_env(**env_kwargs(run, "train"))
    data = out / "teacher.jsonl"
    stats = collect(make_policy("synth_teacher"), train_env, len(train_env.tasks), data, only_correct=True,
                    seed=run.seed, batch_size=32, progress=progress)
    eval_env = _vec(run, "test", min(run.eval_episodes, 64))
    sft_cfg = _config(run, out / "sft", algo="sft", data=str(data), sft_epochs=run.sft_epochs, sft_lr=run.sft_lr,
                      sft_batch_size=run.sft_batch_size, actor_warmup_ratio=0.0, eval_every=run.eval_every, progress=progress)
    with torch_threads(1):
        train(sft_cfg, model=model, tokenizer=tokenizer, eval_env=eval_env, on_step=record("sft", 0))
        sft_steps = max(r["global_step"] for r in rows)
        grpo_cfg = _config(run, out / "grpo", algo="grpo", total_steps=run.grpo_steps, actor_lr=run.grpo_lr,
                           actor_warmup_ratio=0.0, questions_per_step=run.questions_per_step,
                           group_size=run.group_size, mini_batch_size=run.questions_per_step, kl_coef=0.0,
                           entropy_coef=0.0, eval_every=max(1, run.grpo_steps // 4), save_every=run.grpo_steps,
                           progress=progress)
        env = _vec(run, "train", run.questions_per_step * run.group_size)
        train(grpo_cfg, model=model, tokenizer=tokenizer, env=env, eval_env=eval_env,
              on_step=record("grpo", sft_steps))
    evals = [r for r in rows if r["type"] == "eval"]
    summary = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "teacher_episodes": stats["written"],
        "untrained": evals[0],
        "after_sft": [r for r in evals if r["phase"] == "sft"][-1],
        "after_grpo": evals[-1],
        "never_search_em": never_search_em(run),
        "seconds": time.perf_counter() - t0,
        "checkpoint": str(out / "grpo"),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in run.__dict__.items()},
    }
    (out / "curve.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    summary["png"] = str(plot_curve(rows, summary["never_search_em"], out / "curve.png"))
    return summary


def plot_curve(rows: list[dict[str, Any]], never_search: float, path: Path) -> Path:
    """Held-out EM and searches per episode against training steps (SFT, then GRPO), with
    the never-search level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in rows if r["type"] == "eval"]
    sft_end = max((r["global_step"] for r in rows if r["phase"] == "sft"), default=0)
    x = [r["global_step"] for r in evals]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(x, [r["em"] for r in evals], "o-", label="tiny agent, held-out EM (greedy)")
    ax1.axhline(never_search, color="gray", ls="--", label=f"best never-search policy ({never_search:.2f})")
    ax1.set_ylim(-0.02, 1.02)
    ax1.set_ylabel("exact match on held-out entities")
    ax2.plot(x, [r["searches"] for r in evals], "o-", color="tab:green", label="searches per episode (held-out)")
    ax2.set_ylabel("searches per episode")
    for ax in (ax1, ax2):
        ax.axvline(sft_end, color="black", lw=0.8)
        ax.text(sft_end, ax.get_ylim()[1] * 0.95, " GRPO →", va="top")
        ax.text(sft_end, ax.get_ylim()[1] * 0.95, "← SFT ", va="top", ha="right")
        ax.set_xlabel("optimizer step (SFT on teacher trajectories, then GRPO with EM reward)")
        ax.legend(loc="center right", fontsize=8)
    fig.suptitle("A tiny model learns to search SynthWorld (single-hop, invented facts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
