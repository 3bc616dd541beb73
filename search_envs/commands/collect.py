"""`search-envs collect`: play N episodes with any policy and write them as trajectories
(JSONL, one episode a line, with the env's role-tagged transcript) for cold-start SFT
(`search-envs train --algo sft --data FILE`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from search_envs.commands.run import add_policy_arguments, policy_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="play episodes with a policy and write trajectories for SFT")
    p.add_argument("--policy", required=True, help="policy name (see below), e.g. synth_teacher on SynthWorld")
    p.add_argument("--env", default="SearchEnvs/SynthWorld-v0", help="registered environment id")
    p.add_argument("-n", "--episodes", type=int, default=100, help="episodes to play")
    p.add_argument("--out", required=True, help="JSONL file to write (overwritten)")
    p.add_argument("--only-correct", action="store_true", help="keep only episodes with exact-match answers")
    p.add_argument("--tasks", default=None, help="task spec (default: the env's default tasks)")
    p.add_argument("--env-kwargs", type=json.loads, default=None, help='JSON object for gym.make, e.g. \'{"top_k": 3}\'')
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--max-turns", type=int, default=None)
    add_policy_arguments(p)
    p.set_defaults(func=run)


def collect(policy, env, n: int, out: str | Path, only_correct: bool = False, seed: int = 0,
            batch_size: int = 8, progress: bool = True) -> dict[str, float]:
    """Play `n` episodes and write the kept ones (EpisodeRecord fields plus `transcript`)
    to `out`; returns counts and the policy's EM over all episodes."""
    from search_envs.policies import run_episodes

    records = run_episodes(policy, env, n=n, seed=seed, batch_size=batch_size, keep_transcript=True,
                           progress="collect" if progress else False)
    kept = [r for r in records if r.em > 0 or not only_correct]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for rec in kept:
            row = rec.to_dict()
            row["transcript"] = row["extra"].pop("transcript")
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    em = sum(r.em for r in records) / max(1, len(records))
    return {"episodes": len(records), "written": len(kept), "em": em,
            "searches": sum(r.searches for r in records) / max(1, len(records))}


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import search_envs  # noqa: F401  (registers the ids)
    from search_envs.policies import make_policy

    if args.episodes < 1:
        raise ValueError("-n must be >= 1")
    env_kwargs = dict(args.env_kwargs or {})
    env_kwargs.update({k: v for k, v in {"tasks": args.tasks, "top_k": args.top_k, "max_turns": args.max_turns}.items()
                       if v is not None})
    env = gym.make(args.env, **env_kwargs)
    policy = make_policy(args.policy, **policy_kwargs(args))
    try:
        stats = collect(policy, env, args.episodes, args.out, args.only_correct, args.seed, args.batch_size)
    finally:
        policy.close()
        env.close()
    print(f"played {stats['episodes']} episodes (EM {stats['em']:.3f}, {stats['searches']:.2f} searches each); "
          f"wrote {stats['written']} to {args.out}")
    return 0
