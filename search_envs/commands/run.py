"""`search-envs run`: play N episodes of an environment with a policy and print a results table."""

from __future__ import annotations

import argparse
import json
import sys

from search_envs.commands import add_protocol_option


def add_policy_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `bench` for building policies."""
    from search_envs.policies.registry import POLICY_HELP

    p.add_argument("--max-new-tokens", type=int, default=None, help="generation budget per LM call")
    p.add_argument("--batch-size", type=int, default=8, help="episodes played side by side")
    p.add_argument("--seed", type=int, default=0)
    p.epilog = POLICY_HELP


def policy_kwargs(args: argparse.Namespace) -> dict:
    return {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="play N episodes with a policy and print the results")
    p.add_argument("--env", default="SearchEnvs/WikiBM25-v0", help="registered environment id")
    p.add_argument("--policy", required=True, help="policy name (see below)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--tasks", default=None, help="task spec (default: the env's default tasks)")
    add_protocol_option(p)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--max-turns", type=int, default=None)
    p.add_argument("--out", default=None, help="also write per-episode records (with trajectories) to this JSONL")
    add_policy_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import search_envs  # noqa: F401  (registers the ids)
    from search_envs.bench import results_table
    from search_envs.policies import make_policy, run_episodes, summarize

    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    env_kwargs = {
        k: v
        for k, v in {"tasks": args.tasks, "protocol": args.protocol, "top_k": args.top_k, "max_turns": args.max_turns}.items()
        if v is not None
    }
    env = gym.make(args.env, **env_kwargs)
    policy = make_policy(args.policy, **policy_kwargs(args))
    try:
        records = run_episodes(policy, env, n=args.episodes, seed=args.seed, batch_size=args.batch_size)
    finally:
        policy.close()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
    base = env.unwrapped
    table = {"suite": "run", "env": args.env, "top_k": base.top_k, "recall": {},
             "policies": {args.policy: {base.tasks.name: summarize(records)}}}
    print(results_table(table), end="")
    sys.stdout.flush()
    env.close()
    return 0
