"""`search-envs data ...`: fetch the papers' corpora, indexes and test sets, and export
tasks in other trainers' formats. Each sub-command registers itself in `register`."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get the papers' data; export tasks for other trainers")
    cmds = p.add_subparsers(dest="data_command", required=True)

    g = cmds.add_parser("get", help="download wiki-18, Search-R1's e5 index or FlashRAG test sets from the HF hub",
                        description="Resumable, checksummed and idempotent downloads (HF_ENDPOINT picks a mirror).")
    g.add_argument("names", nargs="+", metavar="NAME", help="items or groups (see `search-envs data list`)")
    g.add_argument("--dir", default=None, help="where to put them (default $SEARCH_ENVS_DATA_HOME or the cache)")
    g.add_argument("--keep-parts", action="store_true", help="keep the .gz / part files after assembling")
    g.add_argument("--restart", action="store_true", help="discard partial downloads of these items first")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=run_get)

    ls = cmds.add_parser("list", help="what `data get` can fetch, and what is already here")
    ls.add_argument("--dir", default=None)
    ls.set_defaults(func=run_list)

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


def run_get(args: argparse.Namespace) -> int:
    from search_envs import hub

    root = args.dir or hub.data_dir()
    try:
        items = hub.expand(args.names)
        if args.restart:
            for item in items:
                if hub.status(item, root) == "partial":
                    hub.remove_partial(hub.item_path(item.name, root).parent)
        if args.quiet:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        hub.get(args.names, root, keep_parts=args.keep_parts, progress=not args.quiet)
    except hub.HubDataError as exc:
        print(f"search-envs: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_list(args: argparse.Namespace) -> int:
    from search_envs import hub

    root = args.dir or hub.data_dir()
    print(f"data folder: {root}")
    for item in hub.ITEMS.values():
        size = f"~{item.approx_bytes / 1e9:.0f} GB" if item.approx_bytes else ""  # download size
        print(f"  {item.name:<17} {hub.status(item, root):<8} {size:>8}  {item.description}  [{item.repo_id}]")
    for name, members in hub.GROUPS.items():
        print(f"  {name:<17} group: {', '.join(members)}")
    if args.dir is None:  # suites look in the default folder
        from search_envs.bench import load_suite, missing_requirements

        missing = missing_requirements(load_suite("searchr1"))
        print("suite searchr1: " + ("ready" if not missing else "missing:\n    " + "\n    ".join(missing)))
    return 0
