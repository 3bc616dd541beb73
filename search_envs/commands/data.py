"""`search-envs data ...`: fetch the papers' corpora, indexes and test sets, and export
tasks in other trainers' formats. Each sub-command registers itself in `register`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get the papers' data; export tasks for other trainers")
    cmds = p.add_subparsers(dest="data_command", required=True)
    del cmds  # sub-commands are added here
