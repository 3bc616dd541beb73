"""The `search-envs` command.

Each subcommand lives in `search_envs.commands.<name>` and exposes
`register(subparsers)`, which adds its parser and sets `func`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gymnasium import error as gym_error

COMMANDS = [
    "search_envs.commands.index",
    "search_envs.commands.play",
    "search_envs.commands.serve",
    "search_envs.commands.run",
    "search_envs.commands.bench",
    "search_envs.commands.train",
    "search_envs.commands.data",
    "search_envs.commands.tasks",
    "search_envs.commands.collect",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="search-envs",
        description="Gymnasium environments for training and benchmarking LLM search agents: "
        "build and serve indexes, play episodes, run baselines and benchmarks, train.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader stopped early (`search-envs index info DIR | head`): as Unix tools do, stop
        # quietly; stdout goes to devnull so the interpreter's final flush raises nothing either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (FileNotFoundError, ValueError, KeyError, gym_error.Error) as exc:
        print(f"search-envs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
