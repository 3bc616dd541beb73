"""Options several subcommands share, so their help reads the same everywhere."""

from __future__ import annotations

import argparse


def add_protocol_option(p: argparse.ArgumentParser, dest: str = "protocol") -> None:
    """`--protocol`, its choices read from the protocol registry (a protocol added there is listed)."""
    from search_envs.protocols import PROTOCOLS

    p.add_argument("--protocol", dest=dest, default=None, choices=sorted(PROTOCOLS),
                   help="action format: how the policy writes searches and answers (default: the env's)")
