"""Does an agent trained here learn to search? A tiny model from scratch on SynthWorld.

SynthWorld's facts are invented, so no model can know them: the only way above chance
is to search. This script trains a ~0.15M-parameter Llama from scratch (cold-start SFT
on a scripted teacher's search-then-answer episodes, then GRPO with Search-R1's EM
reward) and reports, on questions about entities never seen in training:

- the tiny agent untrained, after SFT and after SFT + GRPO (greedy EM, searches/episode);
- baselines on the same questions: the best policy that never searches (`majority`),
  `random`, one search of the question (`oracle`), the teacher, and SmolLM2-135M-Instruct
  answering directly or with retrieval (`direct`, `rag`; --no-lm skips them);
- the learning curve as a PNG.

`make demo` runs it. Figures in agents/README.md.

    python benchmarks/tiny_search.py                      # ~3-5 min on 2 CPU cores
    python benchmarks/tiny_search.py --no-lm --out bench_out/tiny_search
    python benchmarks/tiny_search.py --seeds 0 1 2 3 4    # the spread over training seeds (training only)

torch's and MKL's CPU kernels are capped at AVX2 (`SAME_KERNELS_ENV`) so that every x86-64
machine prints the same figures for the same seed; set ATEN_CPU_CAPABILITY yourself to override.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.report import markdown_table  # noqa: E402
from search_envs.agents.tiny_search import TinySearchRun, env_kwargs, learn_to_search, pin_cpu_kernels  # noqa: E402

pin_cpu_kernels()  # before anything imports torch

BASELINES = {
    "majority": "never searches: the most common answer (best possible without search)",
    "random": "random searches and answers",
    "oracle": "one search of the question; the gold answer if it was retrieved",
    "synth_teacher": "scripted teacher: searches the entity, answers (its episodes are the SFT data)",
    "direct": "SmolLM2-135M-Instruct answers from memory",
    "rag": "SmolLM2-135M-Instruct reads the top results for the question",
}


def say(text: str = "") -> None:
    print(text, flush=True)


def introduce(run: TinySearchRun) -> None:
    from search_envs.registration import make_synth_env

    env = make_synth_env(**env_kwargs(run, "test"))
    task = env.tasks[0]
    env.reset(options={"task_index": 0})
    obs, *_ = env.step(f"<search> {task.metadata['search_path'][0]} </search>")
    say("SynthWorld: a generated world of invented people, cities and organisations, so no model can")
    say("know the answers; an agent beats chance only by searching. A held-out question:")
    say(f"  Q: {task.question}   (gold: {task.answers[0]})")
    say(f"and what a BM25 search for its entity returns (top {run.top_k}; 40 surnames, so many namesakes):")
    for line in obs.strip().removeprefix("<information>").removesuffix("</information>").splitlines():
        say(textwrap.fill(line, width=100, initial_indent="  ", subsequent_indent="    "))
    say()


def progress_line(row: dict) -> None:
    if row["type"] == "eval":
        say(f"  [{row['phase']:>4} step {row['global_step']:>4}] held-out EM {row['em']:.3f} | searches/episode "
            f"{row['searches']:.2f} | answered {row['answered']:.2f}")
    elif row["type"] == "train":
        say(f"  [grpo step {row['global_step']:>4}] training reward {row['reward']:.3f} | searches/episode "
            f"{row['searches']:.2f} | {row['step_seconds']:.1f} s/step")


def baseline_rows(run: TinySearchRun, names: list[str]) -> list[dict]:
    from search_envs.policies import make_policy, run_episodes, summarize
    from search_envs.registration import make_synth_env

    rows = []
    for name in names:
        env = make_synth_env(**env_kwargs(run, "test"))
        policy = make_policy(name)
        t0 = time.perf_counter()
        try:
            summary = summarize(run_episodes(policy, env, n=run.eval_episodes, seed=run.seed, batch_size=16,
                                             progress=False))
        finally:
            policy.close()
        rows.append({"policy": name, "what": BASELINES[name], "held-out EM": summary["em"],
                     "searches/episode": summary["searches"], "seconds": time.perf_counter() - t0})
        say(f"  {name:<14} EM {summary['em']:.3f}  searches/episode {summary['searches']:.2f}")
    return rows


def spread(out: Path, seeds: list[int]) -> int:
    """Train once per seed (no baselines) and print held-out EM per seed and its range."""
    rows = []
    for seed in seeds:
        run = TinySearchRun(seed=seed)
        say(f"seed {seed}: training ({run.sft_epochs} SFT epochs, {run.grpo_steps} GRPO steps)")
        summary = learn_to_search(out / f"seed{seed}", run)
        rows.append({"seed": seed, "after SFT": summary["after_sft"]["em"], "after SFT + GRPO": summary["after_grpo"]["em"],
                     "searches/episode": summary["after_grpo"]["searches"], "never-search": summary["never_search_em"],
                     "seconds": summary["seconds"]})
        say(f"  held-out EM after SFT {rows[-1]['after SFT']:.3f}, after GRPO {rows[-1]['after SFT + GRPO']:.3f}")
    final = [r["after SFT + GRPO"] for r in rows]
    say()
    say(markdown_table(rows, ["seed", "after SFT", "after SFT + GRPO", "searches/episode", "never-search", "seconds"]))
    say()
    say(f"held-out EM after SFT + GRPO over {len(seeds)} seeds: min {min(final):.3f}, mean {sum(final) / len(final):.3f}, "
        f"max {max(final):.3f}")
    (out / "spread.json").write_text(json.dumps({"rows": rows, "kernels": kernels()}, indent=2) + "\n")
    return 0


def kernels() -> dict[str, str]:
    """Which CPU kernels torch ran (the figures depend on them, SAME_KERNELS_ENV)."""
    import torch

    return {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", ""), "MKL_CBWR": os.environ.get("MKL_CBWR", "")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench_out/tiny_search", help="output folder (logs, checkpoints, PNG, JSON)")
    p.add_argument("--no-lm", action="store_true", help="skip the SmolLM2 baselines (direct, rag)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", help="train once per seed and print the spread (no baselines)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        import shutil

        shutil.rmtree(out)  # a fresh run every time (its own output folder only)
    if args.seeds:
        return spread(out, args.seeds)
    run = TinySearchRun(seed=args.seed)
    t0 = time.perf_counter()
    introduce(run)
    say(f"1. Training a tiny model from scratch ({run.hidden_size}-wide, {run.layers} layers): SFT on the teacher's "
        f"episodes, then GRPO with the EM reward. Held-out = entities never seen in training.")
    summary = learn_to_search(out, run, on_row=progress_line)
    say(f"   trained in {summary['seconds']:.0f} s; learning curve: {summary['png']}")
    say()
    say("2. Baselines on the same held-out questions:")
    names = ["majority", "random", "oracle", "synth_teacher"] + ([] if args.no_lm else ["direct", "rag"])
    rows = [
        {"policy": "tiny agent, untrained", "what": "random weights", "held-out EM": summary["untrained"]["em"],
         "searches/episode": summary["untrained"]["searches"]},
        {"policy": "tiny agent, after SFT", "what": "imitates the teacher's episodes",
         "held-out EM": summary["after_sft"]["em"], "searches/episode": summary["after_sft"]["searches"]},
        {"policy": "tiny agent, after SFT + GRPO", "what": "then RL with the EM reward",
         "held-out EM": summary["after_grpo"]["em"], "searches/episode": summary["after_grpo"]["searches"]},
    ] + baseline_rows(run, names)
    say()
    say(f"Held-out SynthWorld questions ({run.eval_episodes}, single-hop: {', '.join(run.relations)}); "
        f"EM = exact match of the answer:")
    say()
    say(markdown_table([{**r, "held-out EM": f"{r['held-out EM']:.3f}", "searches/episode": f"{r['searches/episode']:.2f}"}
                        for r in rows], ["policy", "what", "held-out EM", "searches/episode"]))
    say()
    majority = next(r["held-out EM"] for r in rows if r["policy"] == "majority")
    say(f"The best policy that never searches scores {majority:.3f} on these {run.eval_episodes} questions "
        f"({summary['never_search_em']:.3f} on all held-out questions: chance); the tiny agent went from "
        f"{summary['untrained']['em']:.3f} to {summary['after_grpo']['em']:.3f} by learning to search "
        f"({summary['after_grpo']['searches']:.2f} searches per episode).")
    say(f"That is seed {run.seed}. Every seed learns to search; reading the answer out of the result is a transition "
        f"that most seeds do not reach in this many steps (seeds 0-4: held-out EM 0.016-0.781; agents/README.md; "
        f"`--seeds 0 1 2 3 4` reruns them).")
    say(f"Learning curve: {summary['png']}   (all results: {out / 'results.json'}; total {time.perf_counter() - t0:.0f} s)")
    (out / "results.json").write_text(json.dumps({"summary": summary, "table": rows, "kernels": kernels()}, indent=2)
                                      + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
