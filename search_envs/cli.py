"""The `search-envs` command. Each subcommand lives in `search_envs.commands.<name>`
and exposes `register(subparsers)`, which adds its parser and sets `func`."""

from __future__ import annotations

import argparse
import importlib
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
    "search_envs.commands.collect",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="search-envs", description=__doc__.split("\n")[0])
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
    except (FileNotFoundError, ValueError, KeyError, gym_error.Error) as exc:
        print(f"search-envs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
