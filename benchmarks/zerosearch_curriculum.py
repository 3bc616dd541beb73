"""Does a noise curriculum matter? ZeroSearch's claim, tested on CPU with the tiny agent.

The tiny agent of agents/tiny_search.py (a word-level Llama of ~0.15M parameters,
cold-started by SFT on `synth_teacher` trajectories; its sizes and learning rates) is
trained with GRPO on single-hop SynthWorld, searching through `SearchEnvs/SynthSim-v0` (the exact ZeroSearch-style simulator: useful documents
are the true facts, noisy ones irrelevant, false or partially true), under four noise
conditions, from the same SFT checkpoint per seed:

  clean        no noise
  constant     p = 0.25 throughout (the mean noise of the linear curriculum)
  exponential  ZeroSearch's curriculum, p_s = 0 -> p_e = 0.5, b = 4
  linear       p_s = 0 -> p_e = 0.5

Training noise mixes the three kinds. Each final policy (and the SFT start) is evaluated
greedily on the held-out entities with clean search and with each noise kind alone at
p = 0.5 per search. Writes bench_out/zerosearch/{results.json, curves.png, robustness.png}.

    OMP_NUM_THREADS=1 python benchmarks/zerosearch_curriculum.py             # 3 seeds, 3 processes
    OMP_NUM_THREADS=1 python benchmarks/zerosearch_curriculum.py --reevaluate train   # its checkpoints, training entities
    OMP_NUM_THREADS=1 python benchmarks/zerosearch_curriculum.py --seeds 1 --jobs 1 --sft-epochs 2 --grpo-steps 2 --no-readme
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.report import append_readme, markdown_table, out_dir  # noqa: E402

CONDITIONS: dict[str, Any] = {
    "clean": None,
    "constant": {"name": "constant", "p": 0.25},
    "exponential": {"name": "exponential", "p_start": 0.0, "p_end": 0.5, "base": 4},
    "linear": {"name": "linear", "p_start": 0.0, "p_end": 0.5},
}
EVAL_KINDS = ("clean", "irrelevant", "false", "partial")
EVAL_NOISE = 0.5
"""Noise probability per search in the noisy evaluations."""


def sim_kwargs(run, split: str, schedule: Any, kinds: tuple[str, ...] = ("irrelevant", "false", "partial")) -> dict:
    """SynthSim-v0 keyword arguments: the tiny run's world, questions and sizes, a noise schedule."""
    from search_envs.agents.tiny_search import env_kwargs

    return {**env_kwargs(run, split), "noise_schedule": schedule, "noise_kinds": kinds}


def sim_vec(n: int, **kwargs):
    """n SynthSim-v0 envs sharing one engine (one world in memory)."""
    import gymnasium as gym

    from search_envs.vector import SearchVectorEnv

    envs = [gym.make("SearchEnvs/SynthSim-v0", **kwargs).unwrapped for _ in range(n)]
    return SearchVectorEnv(envs, engine=envs[0].engine)


def eval_settings(run, split: str = "test") -> dict[str, dict]:
    """The evaluation envs' kwargs: clean, then each noise kind alone at EVAL_NOISE."""
    out = {"clean": sim_kwargs(run, split, None)}
    for kind in EVAL_KINDS[1:]:
        out[kind] = sim_kwargs(run, split, {"name": "constant", "p": EVAL_NOISE}, (kind,))
    return out


def evaluate_model(model, tokenizer, cfg, run, envs: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Greedy episodes on every held-out question under each evaluation setting."""
    from search_envs.agents.rollout import HFRolloutGenerator
    from search_envs.agents.train import evaluate_in_training

    greedy = HFRolloutGenerator(model, tokenizer, envs["clean"].envs[0].protocol.stop_strings, 0.0,
                         batch_size=cfg.rollout_batch_size)
    results = {}
    for name, env in envs.items():
        ids = [t.id for t in env.envs[0].tasks][: run.eval_episodes]
        results[name] = evaluate_in_training(greedy, tokenizer, env, ids, cfg)
    return results


def evaluate_policy(policy_name: str, run, split: str = "test") -> dict[str, dict[str, float]]:
    """A scripted policy (synth_teacher, majority) under the same evaluation settings."""
    import gymnasium as gym

    from search_envs.policies import make_policy, run_episodes, summarize

    out = {}
    for name, kwargs in eval_settings(run, split).items():
        env = gym.make("SearchEnvs/SynthSim-v0", **kwargs)
        records = run_episodes(make_policy(policy_name), env, n=run.eval_episodes, seed=run.seed, progress=False)
        out[name] = summarize(records)
        env.close()
    return out


def one_seed(seed: int, args) -> dict[str, Any]:
    """SFT once on synth_teacher trajectories, then GRPO under every condition from the
    same start; evaluate the start and every result the same way."""
    import gymnasium as gym

    from search_envs.agents.tiny import tiny_llama, torch_threads
    from search_envs.agents.tiny_search import TinySearchRun, _config, make_tokenizer
    from search_envs.agents.train import train
    from search_envs.commands.collect import collect
    from search_envs.policies import make_policy

    run = TinySearchRun(seed=seed, grpo_steps=args.grpo_steps, eval_episodes=args.eval_episodes,
                        sft_epochs=args.sft_epochs)
    out = Path(args.out) / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(replace(run, seed=0))  # over the env's world (world seed 0 for every run seed)

    def config(path: Path, **overrides):
        return _config(run, path, env_id="SearchEnvs/SynthSim-v0", env_kwargs=sim_kwargs(run, "train", None),
                       eval_tasks=None, actor_warmup_ratio=0.0, progress=False, **overrides)

    model = tiny_llama(len(tokenizer), hidden_size=run.hidden_size, layers=run.layers, heads=run.heads, seed=seed,
                       max_positions=1024)
    result: dict[str, Any] = {"seed": seed, "conditions": {}}
    with torch_threads(1):
        teacher_env = gym.make("SearchEnvs/SynthSim-v0", **sim_kwargs(run, "train", None))
        data = out / "teacher.jsonl"
        result["teacher_data"] = collect(make_policy("synth_teacher"), teacher_env, len(teacher_env.unwrapped.tasks),
                                         data, only_correct=True, seed=seed, batch_size=32, progress=False)
        t0 = time.perf_counter()
        train(config(out / "sft", algo="sft", data=str(data), sft_epochs=run.sft_epochs, sft_lr=run.sft_lr,
                         sft_batch_size=run.sft_batch_size), model=model, tokenizer=tokenizer)
        result["sft_seconds"] = time.perf_counter() - t0
        eval_envs = {name: sim_vec(min(run.eval_episodes, 64), **kw) for name, kw in eval_settings(run).items()}
        grpo = config(out / "grpo", algo="grpo", total_steps=run.grpo_steps, actor_lr=run.grpo_lr,
                          questions_per_step=run.questions_per_step, group_size=run.group_size,
                          mini_batch_size=run.questions_per_step, kl_coef=0.0, entropy_coef=0.0,
                          save_every=10 * run.grpo_steps)
        result["sft"] = evaluate_model(model, tokenizer, grpo, run, eval_envs)
        print(f"seed {seed} SFT start: held-out EM " + ", ".join(f"{k} {v['em']:.2f}" for k, v in result["sft"].items()),
              flush=True)
        start = copy.deepcopy(model.state_dict())
        for name, schedule in CONDITIONS.items():
            t0 = time.perf_counter()
            model.load_state_dict(start)
            cfg = replace(grpo, output_dir=str(out / name), env_kwargs=sim_kwargs(run, "train", schedule))
            env = sim_vec(cfg.questions_per_step * cfg.group_size, **cfg.env_kwargs)
            rows = train(cfg, model=model, tokenizer=tokenizer, env=env)
            result["conditions"][name] = {
                "train": [r for r in rows if r["type"] == "train"],
                "eval": evaluate_model(model, tokenizer, cfg, run, eval_envs),
                "seconds": time.perf_counter() - t0,
            }
            print(f"seed {seed} {name}: held-out EM " + ", ".join(
                f"{k} {v['em']:.2f}" for k, v in result["conditions"][name]["eval"].items()), flush=True)
    for policy in ("synth_teacher", "majority"):
        result[policy] = evaluate_policy(policy, run)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def reevaluate(seed: int, args) -> dict[str, Any]:
    """The saved SFT and GRPO checkpoints of a finished run, evaluated on `args.eval_split`
    (e.g. the training entities: does the agent read the results, or recall the answer?)."""
    from search_envs.agents.checkpoint import resolve_actor_dir
    from search_envs.agents.tiny import torch_threads
    from search_envs.agents.tiny_search import TinySearchRun, _config
    from search_envs.models import load_causal_lm

    run = TinySearchRun(seed=seed, eval_episodes=args.eval_episodes)
    out = Path(args.out) / f"seed{seed}"
    cfg = _config(run, out, eval_tasks=None, progress=False)
    result: dict[str, Any] = {"seed": seed, "split": args.eval_split, "conditions": {}}
    with torch_threads(1):
        envs = {name: sim_vec(min(run.eval_episodes, 64), **kw) for name, kw in eval_settings(run, args.eval_split).items()}
        for name in ["sft", *CONDITIONS]:
            model, tokenizer = load_causal_lm(str(resolve_actor_dir(out / name)), device="cpu")
            evals = evaluate_model(model, tokenizer, cfg, run, envs)
            if name == "sft":
                result["sft"] = evals
            else:
                result["conditions"][name] = {"eval": evals}
    for policy in ("synth_teacher", "majority"):
        result[policy] = {k: v for k, v in evaluate_policy(policy, run, args.eval_split).items()}
    return result


# -- figures and tables ------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def plot_curves(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in CONDITIONS:
        runs = [r["conditions"][name]["train"] for r in results]
        steps = [row["step"] for row in runs[0]]
        for ax, key in zip(axes, ("reward", "noise_rate", "searches")):
            series = np.array([[row.get(key, 0.0) for row in run] for run in runs])
            m, s = series.mean(0), series.std(0)
            ax.plot(steps, m, label=name)
            ax.fill_between(steps, m - s, m + s, alpha=0.15)
    for ax, title in zip(axes, ("training reward (EM)", "realised noise rate", "searches per episode")):
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
    axes[0].legend()
    fig.suptitle(f"Tiny agent, GRPO on SynthSim-v0 under four noise conditions (mean ± std over {len(results)} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_robustness(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ["sft"] + list(CONDITIONS)
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(rows)
    for i, name in enumerate(rows):
        evals = [r["sft"] if name == "sft" else r["conditions"][name]["eval"] for r in results]
        ms = [mean_std([e[k]["em"] for e in evals]) for k in EVAL_KINDS]
        x = np.arange(len(EVAL_KINDS)) + (i - (len(rows) - 1) / 2) * width
        ax.bar(x, [m for m, _ in ms], width, yerr=[s for _, s in ms], label="SFT start" if name == "sft" else name)
    never = np.mean([r["majority"]["clean"]["em"] for r in results])
    ax.axhline(never, color="gray", ls="--", lw=1, label=f"never-search policy ({never:.2f})")
    ax.set_xticks(np.arange(len(EVAL_KINDS)), [k if k == "clean" else f"{k} (p={EVAL_NOISE})" for k in EVAL_KINDS])
    ax.set_ylabel("held-out EM (greedy)")
    ax.set_title(f"Evaluation on clean and noisy search (mean ± std over {len(results)} seeds)")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: list[dict]) -> str:
    rows = []
    for name in ["sft", *CONDITIONS, "synth_teacher", "majority"]:
        row: dict[str, Any] = {"trained": {"sft": "SFT start (no GRPO)", "synth_teacher": "synth_teacher (scripted)",
                                           "majority": "majority (never searches)"}.get(name, f"GRPO, {name}")}
        for kind in EVAL_KINDS:
            evals = [(r["conditions"][name]["eval"] if name in CONDITIONS else r[name])[kind] for r in results]
            m, s = mean_std([e["em"] for e in evals])
            row[kind] = f"{m:.3f} ± {s:.3f}"
            if kind == "clean":
                row["searches (clean)"] = f"{np.mean([e['searches'] for e in evals]):.2f}"
        rows.append(row)
    return markdown_table(rows, ["trained", *EVAL_KINDS, "searches (clean)"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--grpo-steps", type=int, default=30)
    p.add_argument("--sft-epochs", type=int, default=60)
    p.add_argument("--jobs", type=int, default=3, help="seeds run in parallel processes (one torch thread each)")
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--out", default=None, help="output folder (default bench_out/zerosearch)")
    p.add_argument("--no-readme", action="store_true")
    p.add_argument("--reevaluate", metavar="SPLIT", dest="eval_split", default=None,
                   help="no training: evaluate a finished run's checkpoints on this split (train / test)")
    args = p.parse_args(argv)
    work = Path(args.out) if args.out else out_dir() / "zerosearch"
    work.mkdir(parents=True, exist_ok=True)
    args.out = str(work)
    t0 = time.perf_counter()
    if args.eval_split:
        results = [reevaluate(seed, args) for seed in range(args.seeds)]
        (work / f"results_{args.eval_split}.json").write_text(json.dumps(results, indent=1))
        text = table(results)
        print(text)
        if not args.no_readme:
            append_readme(f"ZeroSearch curricula, tiny agent: checkpoints evaluated on the {args.eval_split} entities",
                          f"Held-out EM columns measured on the `{args.eval_split}` split instead (same settings; "
                          f"{(time.perf_counter() - t0) / 60:.1f} min on a shared machine).\n\n{text}")
        return 0
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(args.jobs, args.seeds)) as pool:
            results = pool.starmap(one_seed, [(seed, args) for seed in range(args.seeds)])
    else:
        results = [one_seed(seed, args) for seed in range(args.seeds)]
    minutes = (time.perf_counter() - t0) / 60
    (work / "results.json").write_text(json.dumps(results, indent=1))
    plot_curves(results, work / "curves.png")
    plot_robustness(results, work / "robustness.png")
    text = table(results)
    print(text)
    print(f"{minutes:.1f} min; figures in {work}")
    shown = os.path.relpath(work, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not args.no_readme:
        append_readme("ZeroSearch curricula, tiny agent on SynthSim-v0",
                      f"{args.seeds} seeds, {args.grpo_steps} GRPO steps per condition, held-out EM "
                      f"(noisy columns: that kind alone at p={EVAL_NOISE} per search); {minutes:.1f} min on a "
                      f"shared machine. Figures: `{shown}/curves.png`, `{shown}/robustness.png`.\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
