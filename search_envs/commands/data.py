"""`search-envs data ...`: fetch the papers' corpora, indexes and test sets, and export
tasks in other trainers' formats. Each sub-command registers itself in `register`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get the papers' data; export tasks for other trainers")
    cmds = p.add_subparsers(dest="data_command", required=True)
    add_export_verl(cmds)


def add_export_verl(cmds: argparse._SubParsersAction) -> None:
    p = cmds.add_parser("export-verl", help="write a task set as verl parquet (train/test) for the verl agent loop")
    p.add_argument("--tasks", required=True, help="task spec (file, 'ramp:train', ...)")
    p.add_argument("--out", required=True, help="output directory for train.parquet and test.parquet")
    p.add_argument("--test-tasks", default=None, help="test task spec (default: --test-fraction of --tasks)")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--env", default="SearchEnvs/WikiBM25-v0", help="the env id each episode is played on")
    p.add_argument("--env-kwargs", default="{}", help='JSON env kwargs, e.g. \'{"protocol": "search_r1", "top_k": 3}\'')
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_export_verl)


def run_export_verl(args: argparse.Namespace) -> int:
    import json

    from search_envs.integrations.verl.dataset import export_verl

    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--env-kwargs is not JSON: {exc}") from None
    if not isinstance(env_kwargs, dict):
        raise ValueError("--env-kwargs must be a JSON object")
    paths = export_verl(args.tasks, args.out, env_id=args.env, env_kwargs=env_kwargs, test_tasks=args.test_tasks,
                        test_fraction=args.test_fraction, seed=args.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0
