"""The `search-envs` command, run as a user would run it."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search_envs.cli", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_help_lists_the_subcommands():
    out = run_cli("--help")
    assert out.returncode == 0
    for name in ("index", "play"):
        assert name in out.stdout


def test_play_an_episode_from_stdin(bm25_engine):
    out = run_cli("play", "--seed", "0", stdin="<search>William Shakespeare playwright</search>\n<answer>nobody</answer>\n")
    assert out.returncode == 0, out.stderr
    assert "Question:" in out.stdout
    assert "<information>Doc 1(Title: " in out.stdout and '(Title: "William Shakespeare")' in out.stdout
    assert "episode over: reward=0.000" in out.stdout
    # the player sees the turn before each action, out of the env's max_turns (4)
    assert "[turn 1/4] > " in out.stdout and "[turn 2/4] > " in out.stdout and "[turn 3/4]" not in out.stdout


def test_unknown_env_is_a_clear_error():
    out = run_cli("play", "--env", "SearchEnvs/Nope-v0", stdin="")
    assert out.returncode != 0
    assert "Nope" in out.stderr


def test_the_cli_starts_without_tomllib():
    """Python 3.10 has no tomllib: `bench --help` reads the suite table from search_envs.bench,
    which must not need it to import (only a .toml suite file does)."""
    code = ("import sys; sys.modules['tomllib'] = None\n"
            "from search_envs.cli import main\n"
            "sys.exit(main(['bench', '--help']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--suite" in out.stdout
