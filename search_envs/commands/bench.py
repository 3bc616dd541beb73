"""`search-envs bench`: play a benchmark suite with one or more policies."""

from __future__ import annotations

import argparse

from search_envs.commands.run import add_policy_arguments, policy_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    from search_envs.bench import suite_spec_help

    p = sub.add_parser("bench", help="run a benchmark suite (a built-in one or a suite file)")
    p.add_argument("--policy", action="append", required=True,
                   help="policy name; repeat to compare several in one table (see below)")
    p.add_argument("--suite", default="quick", help=f"{suite_spec_help()} (default: quick)")
    p.add_argument("--n", type=int, default=None, help="questions per dataset (overrides the suite's n)")
    p.add_argument("--out", default=None, help="results folder (default: bench_out/<suite>)")
    add_policy_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search_envs.bench import load_suite, results_table, run_suite
    from search_envs.policies import make_policy

    suite = load_suite(args.suite)
    out = Path(args.out or Path("bench_out") / suite["name"])
    policies = {name: make_policy(name, **policy_kwargs(args)) for name in args.policy}
    try:
        results = run_suite(suite, policies, out, n=args.n, seed=args.seed, batch_size=args.batch_size)
    finally:
        for policy in policies.values():
            policy.close()
    print(results_table(results), end="")
    print(f"\nwrote {out}/results.md, results.json, results.png and per-question JSONL")
    return 0
