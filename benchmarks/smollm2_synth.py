"""Does SmolLM2-135M-Instruct learn to search? SynthWorld single-hop and two-hop:
untrained -> cold-start SFT on the scripted teacher's episodes -> SFT + GRPO with
Search-R1's EM reward, with and without the retrieved-token mask, per seed.

Every stage is the public CLI, run as a subprocess (the exact commands are printed and
saved in each run folder's `command.txt`):

1. `search-envs collect --policy synth_teacher --only-correct` on the train split (per task);
2. `search-envs train --algo sft --data ...` per (task, seed); its held-out eval at step 0 is
   the untrained model, its last eval is the SFT model;
3. `search-envs train --algo grpo --init SFT_DIR [--no-mask-retrieved-tokens]` per
   (task, seed, mask); its last eval is SFT + GRPO.

Held-out evaluation is the trainer's own: greedy episodes on the test split (disjoint
entities), the same `--eval-episodes` task ids for every stage of a seed. The script writes
`results.md` (EM and searches per episode, mean and per seed) and `curves.png` into
`--out-dir`, and with `--readme` appends them with the command to agents/README.md.
A stage whose folder holds `done.json` is not re-run (re-running resumes an interrupted
experiment; `--report-only` only rebuilds the table).

    python benchmarks/smollm2_synth.py                                   # the full experiment (3 seeds, both tasks)
    python benchmarks/smollm2_synth.py --tasks single --seeds 0 1 --jobs 2 --readme   # smaller
    python benchmarks/smollm2_synth.py --gpu                             # larger batches on one GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "agents" / "README.md"

# task name -> (env id, env kwargs, actions per episode: searches the teacher needs + the answer)
TASKS = {
    "single": ("SearchEnvs/SynthWorld-v0", {}, 2),
    "two": ("SearchEnvs/SynthWorldMultiHop-v0", {"hops": [2]}, 3),
}
MASKS = {"mask": [], "nomask": ["--no-mask-retrieved-tokens"]}
# --gpu: Search-R1's GRPO settings (lr 1e-6, warm-up 0.285, temperature 1.0, 5 rollouts) at 32 questions a step;
# 64 held-out episodes = the whole two-hop test split (single-hop has 140). Not run yet (no GPU was lent).
GPU_SIZES = dict(teacher_episodes=400, eval_episodes=64, sft_batch_size=16, sft_epochs=2, grpo_steps=100,
                 questions_per_step=32, group_size=5, mini_batch_size=16, micro_batch_size=8, rollout_batch_size=160,
                 device="cuda", grpo_lr=1e-6, grpo_warmup=0.285, temperature=1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["single", "two"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--grpo-seeds", nargs="+", type=int, default=None,
                   help="seeds that also run the GRPO masking ablation (default: all --seeds)")
    p.add_argument("--masks", nargs="+", choices=sorted(MASKS), default=["mask", "nomask"])
    p.add_argument("--out-dir", default="runs/smollm2_synth")
    p.add_argument("--model", default=None, help="HF model name or folder (default SmolLM2-135M-Instruct)")
    p.add_argument("--teacher-episodes", type=int, default=32, help="teacher episodes collected per task")
    p.add_argument("--eval-episodes", type=int, default=16, help="held-out greedy episodes per evaluation")
    p.add_argument("--sft-epochs", type=int, default=1)
    p.add_argument("--sft-batch-size", type=int, default=8)
    p.add_argument("--sft-lr", type=float, default=1e-4)
    p.add_argument("--grpo-steps", type=int, default=3)
    p.add_argument("--questions-per-step", type=int, default=2)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--mini-batch-size", type=int, default=2)
    p.add_argument("--micro-batch-size", type=int, default=4)
    p.add_argument("--rollout-batch-size", type=int, default=16)
    p.add_argument("--grpo-lr", type=float, default=2e-5)
    p.add_argument("--grpo-warmup", type=float, default=0.0)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-response-length", type=int, default=24)
    p.add_argument("--max-obs-length", type=int, default=200)
    p.add_argument("--max-total-length", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--gpu", action="store_true", help="larger sizes for one GPU (overrides the size options): "
                   + ", ".join(f"{k}={v}" for k, v in GPU_SIZES.items()))
    p.add_argument("--jobs", type=int, default=1, help="stages run at once (each SmolLM2 run needs ~8.5 GB RAM)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report-only", action="store_true", help="only rebuild results.md / curves.png from the logs")
    p.add_argument("--readme", action="store_true", help="append the results and the command to agents/README.md")
    args = p.parse_args(argv)
    if args.gpu:
        for k, v in GPU_SIZES.items():
            setattr(args, k, v)
    if args.grpo_seeds is None:
        args.grpo_seeds = list(args.seeds)
    if not set(args.grpo_seeds) <= set(args.seeds):
        p.error("--grpo-seeds must be a subset of --seeds (GRPO starts from that seed's SFT run)")
    for name in ("teacher_episodes", "eval_episodes", "sft_epochs", "sft_batch_size", "grpo_steps", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


@dataclass
class Stage:
    name: str
    folder: Path
    cmd: list[str]
    needs: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return (self.folder / "done.json").exists()


def cli() -> list[str]:
    return [sys.executable, "-m", "search_envs.cli"]


def common_train_options(args, task: str, seed: int) -> list[str]:
    env_id, env_kwargs, turns = TASKS[task]
    opts = ["--env", env_id, "--tasks", "train", "--eval-tasks", "test", "--eval-episodes", str(args.eval_episodes),
            "--max-turns", str(turns), "--max-response-length", str(args.max_response_length),
            "--max-obs-length", str(args.max_obs_length), "--max-total-length", str(args.max_total_length),
            "--micro-batch-size", str(args.micro_batch_size), "--rollout-batch-size", str(args.rollout_batch_size),
            "--device", args.device, "--seed", str(seed), "--no-progress"]
    if env_kwargs:
        opts += ["--env-kwargs", json.dumps(env_kwargs)]
    if args.device == "cpu":
        opts += ["--torch-threads", "1", "--no-gradient-checkpointing"]
    return opts


def plan(args) -> list[Stage]:
    out = Path(args.out_dir)
    stages = []
    for task in args.tasks:
        env_id, env_kwargs, turns = TASKS[task]
        data = out / task / "teacher"
        cmd = [*cli(), "collect", "--policy", "synth_teacher", "--env", env_id, "--tasks", "train",
               "-n", str(args.teacher_episodes), "--only-correct", "--max-turns", str(turns),
               "--out", str(data / "trajs.jsonl")]
        if env_kwargs:
            cmd += ["--env-kwargs", json.dumps(env_kwargs)]
        stages.append(Stage(f"{task}/teacher", data, cmd))
        for seed in args.seeds:
            sft = out / task / f"seed{seed}" / "sft"
            cmd = [*cli(), "train", "--algo", "sft", "--data", str(data / "trajs.jsonl"),
                   *common_train_options(args, task, seed), "--sft-epochs", str(args.sft_epochs),
                   "--sft-batch-size", str(args.sft_batch_size), "--sft-lr", str(args.sft_lr),
                   "--actor-warmup-ratio", "0", "--output-dir", str(sft)]
            if args.model:
                cmd += ["--model", args.model]
            stages.append(Stage(f"{task}/seed{seed}/sft", sft, cmd, [f"{task}/teacher"]))
            if seed not in args.grpo_seeds:
                continue
            for mask in args.masks:
                run = out / task / f"seed{seed}" / f"grpo-{mask}"
                cmd = [*cli(), "train", "--algo", "grpo", "--init", str(sft), *common_train_options(args, task, seed),
                       "--reward", "em", "--steps", str(args.grpo_steps),
                       "--questions-per-step", str(args.questions_per_step), "--group-size", str(args.group_size),
                       "--mini-batch-size", str(args.mini_batch_size), "--actor-lr", str(args.grpo_lr),
                       "--actor-warmup-ratio", str(args.grpo_warmup), "--temperature", str(args.temperature),
                       "--eval-every", str(args.grpo_steps), "--save-every", str(args.grpo_steps),
                       *MASKS[mask], "--output-dir", str(run)]
                stages.append(Stage(f"{task}/seed{seed}/grpo-{mask}", run, cmd, [f"{task}/seed{seed}/sft"]))
    return stages


def run_stage(stage: Stage) -> Stage:
    if stage.folder.exists() and not stage.done and stage.name.endswith(("sft", "grpo-mask", "grpo-nomask")):
        # an interrupted training run: its folder refuses a fresh start, so move it aside
        stage.folder.rename(stage.folder.with_name(stage.folder.name + f".interrupted-{int(time.time())}"))
    stage.folder.mkdir(parents=True, exist_ok=True)
    (stage.folder / "command.txt").write_text(shlex.join(stage.cmd) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    with open(stage.folder / "stdout.txt", "w") as f:
        rc = subprocess.run(stage.cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    if rc != 0:
        raise RuntimeError(f"{stage.name} failed (exit {rc}); see {stage.folder / 'stdout.txt'}")
    (stage.folder / "done.json").write_text(json.dumps({"seconds": time.time() - t0}) + "\n")
    return stage


def run_all(stages: list[Stage], jobs: int) -> None:
    """Run the stages in dependency order, `jobs` at a time."""
    done = {s.name for s in stages if s.done}
    pending = [s for s in stages if s.name not in done]
    with ThreadPoolExecutor(jobs) as pool:
        running = {}
        while pending or running:
            for s in [s for s in pending if set(s.needs) <= done][: jobs - len(running)]:
                pending.remove(s)
                print(f"[{time.strftime('%H:%M:%S')}] start {s.name}: {shlex.join(s.cmd)}", flush=True)
                running[pool.submit(run_stage, s)] = s
            if not running:
                raise RuntimeError(f"stages waiting on failed stages: {[s.name for s in pending]}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                s = running.pop(fut)
                try:
                    fut.result()
                    done.add(s.name)
                    secs = json.loads((s.folder / "done.json").read_text())["seconds"]
                    print(f"[{time.strftime('%H:%M:%S')}] done  {s.name} ({secs:.0f} s)", flush=True)
                except RuntimeError as exc:
                    print(f"[{time.strftime('%H:%M:%S')}] FAILED {exc}", flush=True)
                    pending = [p for p in pending if s.name not in p.needs]


def read_log(folder: Path) -> list[dict]:
    path = folder / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect_results(args) -> dict:
    """{task: {stage label: {seed: eval row}}} plus the GRPO training rows for the curves."""
    out = Path(args.out_dir)
    results: dict = {}
    for task in args.tasks:
        res = results.setdefault(task, {"evals": {}, "train": {}})
        for seed in args.seeds:
            evals = [r for r in read_log(out / task / f"seed{seed}" / "sft") if r["type"] == "eval"]
            if evals:
                res["evals"].setdefault("untrained", {})[seed] = evals[0]
            if len(evals) > 1:
                res["evals"].setdefault("SFT", {})[seed] = evals[-1]
            for mask in args.masks:
                label = f"SFT + GRPO ({'masked' if mask == 'mask' else 'not masked'})"
                rows = read_log(out / task / f"seed{seed}" / f"grpo-{mask}")
                evals = [r for r in rows if r["type"] == "eval"]
                if len(evals) > 1:
                    res["evals"].setdefault(label, {})[seed] = evals[-1]
                train = [r for r in rows if r["type"] == "train"]
                if train:
                    res["train"].setdefault(label, {})[seed] = train
    return results


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def results_table(results: dict, eval_episodes: int) -> str:
    """Markdown: one table per task, one row per stage; mean ± std over seeds, then each seed."""
    parts = []
    for task, res in results.items():
        env_id, env_kwargs, turns = TASKS[task]
        parts.append(f"**{task}-hop** (`{env_id}`{', ' + json.dumps(env_kwargs) if env_kwargs else ''}, "
                     f"{turns} actions per episode; held-out: {eval_episodes} greedy episodes of the test split per "
                     "evaluation)\n")
        parts.append("| stage | seeds | held-out EM | searches / episode | format rate | EM per seed |")
        parts.append("|---|---|---|---|---|---|")
        for label, by_seed in res["evals"].items():
            seeds = sorted(by_seed)
            em = [by_seed[s]["em"] for s in seeds]
            searches = [by_seed[s]["searches"] for s in seeds]
            fmt = [by_seed[s].get("format_rate", float("nan")) for s in seeds]
            per_seed = ", ".join(f"s{s}: {by_seed[s]['em']:.3f}" for s in seeds)
            parts.append(f"| {label} | {len(seeds)} | {_mean_std(em)} | {_mean_std(searches)} | {_mean_std(fmt)} | "
                         f"{per_seed} |")
        parts.append("")
    return "\n".join(parts)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(15, 4 * len(results)), squeeze=False)
    colors = {"masked": "tab:blue", "not masked": "tab:orange"}
    for row, (task, res) in enumerate(results.items()):
        ax_em, ax_s, ax_r = axes[row]
        labels = list(res["evals"])
        for ax, key, title in ((ax_em, "em", "held-out EM"), (ax_s, "searches", "held-out searches / episode")):
            seeds = sorted({s for by_seed in res["evals"].values() for s in by_seed})
            for seed in seeds:
                xs = [i for i, lab in enumerate(labels) if seed in res["evals"][lab]]
                ax.plot(xs, [res["evals"][labels[i]][seed][key] for i in xs], "o-", alpha=0.7, label=f"seed {seed}")
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels([lab.replace(" + ", "+\n") for lab in labels], fontsize=8)
            ax.set_title(f"{task}-hop: {title}")
            ax.legend(fontsize=8)
        for label, by_seed in res["train"].items():
            kind = "not masked" if "not masked" in label else "masked"
            for seed, rows in sorted(by_seed.items()):
                ax_r.plot([r["step"] for r in rows], [r["reward"] for r in rows], "o-", color=colors[kind], alpha=0.7,
                          label=f"{kind}, seed {seed}")
        ax_r.set_title(f"{task}-hop: GRPO training reward (EM)")
        ax_r.set_xlabel("GRPO step")
        ax_r.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timings(args) -> str:
    """Median wall seconds per SFT / GRPO step, from the logs."""
    out = Path(args.out_dir)
    sft = [r["step_seconds"] for t in args.tasks for s in args.seeds
           for r in read_log(out / t / f"seed{s}" / "sft") if r["type"] == "sft"]
    grpo = [r["step_seconds"] for t in args.tasks for s in args.seeds for m in args.masks
            for r in read_log(out / t / f"seed{s}" / f"grpo-{m}") if r["type"] == "train"]
    parts = []
    if sft:
        parts.append(f"SFT step median {statistics.median(sft):.0f} s ({len(sft)} steps)")
    if grpo:
        parts.append(f"GRPO step median {statistics.median(grpo):.0f} s ({len(grpo)} steps)")
    return "; ".join(parts)


def report(args) -> str:
    out = Path(args.out_dir)
    results = collect_results(args)
    body = results_table(results, args.eval_episodes)
    if any(res["evals"] for res in results.values()):
        plot(results, out / "curves.png")
        body += f"\nCurves: `{out / 'curves.png'}`. Timing: {timings(args)}.\n"
    (out / "results.md").write_text(body)
    print(body)
    return body


def append_readme(body: str, argv: list[str]) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = shlex.join(["python", "benchmarks/smollm2_synth.py", *argv])
    text = (f"\n### SmolLM2 on SynthWorld: run of {stamp}\n\nCommand (`OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1`): "
            f"`{command}`\n\n{body.strip()}\n")
    with open(README, "a", encoding="utf-8") as f:
        f.write(text)
    print(f"appended results to {README.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        stages = plan(args)
        if args.dry_run:
            for s in stages:
                print(f"{s.name}: {shlex.join(s.cmd)}")
            return 0
        run_all(stages, args.jobs)
    body = report(args)
    if args.readme:
        append_readme(body, [a for a in argv if a not in ("--readme", "--report-only")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
