"""Evaluate a trained checkpoint (or any HF causal LM) on held-out tasks through the
same policy interface the benchmarks use (`search_envs.policies`), reporting EM/F1.

    python -m agents.evaluate runs/grpo-smollm2 --tasks ramp:test -n 32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .checkpoint import resolve_actor_dir


def checkpoint_policy(path: str | Path, protocol=None, **generator_kwargs):
    """A `search_envs.policies` Policy for a training output folder, a checkpoint, an
    actor folder, or (when no such folder exists) an HF model name / "smollm2"."""
    from search_envs.policies import make_policy

    if Path(path).exists():
        return make_policy(f"checkpoint:{resolve_actor_dir(path)}", protocol=protocol, **generator_kwargs)
    return make_policy(f"hf:{path}", protocol=protocol, **generator_kwargs)


def evaluate_checkpoint(
    path: str | Path,
    env_id: str = "SearchEnvs/WikiBM25-v0",
    tasks: str = "ramp:test",
    n: int = 32,
    seed: int = 0,
    max_new_tokens: int = 500,
    batch_size: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
    progress: bool = True,
):
    """Greedy episodes of `n` held-out tasks; returns (summary, records)."""
    import gymnasium as gym

    import search_envs  # noqa: F401  (registers the ids)
    from search_envs.policies import run_episodes, summarize

    env = gym.make(env_id, tasks=tasks, **(env_kwargs or {}))
    policy = checkpoint_policy(path, protocol=env.unwrapped.protocol, max_new_tokens=max_new_tokens,
                               temperature=0.0, batch_size=batch_size, device=device)
    try:
        records = run_episodes(policy, env, n=n, seed=seed, batch_size=batch_size, progress=progress)
    finally:
        policy.close()
        env.close()
    return summarize(records), records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("path", help="training output dir, checkpoint dir, model folder, or HF name / 'smollm2'")
    p.add_argument("--env", default="SearchEnvs/WikiBM25-v0")
    p.add_argument("--tasks", default="ramp:test", help="held-out task spec")
    p.add_argument("-n", type=int, default=32, help="episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-turns", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None)
    p.add_argument("--records", default=None, help="write one JSON line per episode here")
    args = p.parse_args(argv)
    summary, records = evaluate_checkpoint(args.path, args.env, args.tasks, args.n, args.seed, args.max_new_tokens,
                                           args.batch_size, {"max_turns": args.max_turns}, args.device)
    if args.records:
        with open(args.records, "w") as f:
            for r in records:
                f.write(json.dumps(r.to_dict()) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
