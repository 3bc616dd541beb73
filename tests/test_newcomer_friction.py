"""What a newcomer reads: --help, error advice, manifests, the first slow search."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import MISSING, dataclass, fields

import pytest

from search_envs.agents.config import TrainConfig
from search_envs.bench import SUITES, load_suite
from search_envs.cli import build_parser
from search_envs.commands.train import config_from_args, field_help, with_default
from search_envs.index import BrokenIndexError, build_index, cached_index_dir, load_index, read_manifest
from search_envs.protocols import PROTOCOLS, SearchR1Protocol
from search_envs.rewards import GROUP_REWARDS, REWARD_PRESETS


def test_help_describes_the_tool_not_its_code():
    text = build_parser().format_help()
    assert "subcommand lives in" not in text and "register(" not in text
    assert "search agents" in text


def test_play_protocol_help_lists_every_protocol(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["play", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in PROTOCOLS) and "search_r1_browse" in out


def subcommand(name: str) -> argparse.ArgumentParser:
    """The parser whose help `search-envs <name> --help` prints (built afresh: registries read now)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def flat(text: str) -> str:
    """Help text without argparse's line wrapping."""
    return " ".join(text.split())


def test_every_train_option_has_a_short_help_and_its_true_default():
    train = subcommand("train")
    opts = options(train)
    assert {f.name for f in fields(TrainConfig)} <= {a.dest for a in opts}
    for a in opts:
        text, _, default = (a.help or "").partition(" (default: ")
        assert len(text) > 10 and default, f"{a.option_strings[0]} has no help or no default"
        assert len(text) <= 200, f"{a.option_strings[0]}: the help is one short sentence, not {len(text)} chars"
    for f in fields(TrainConfig):
        value = f.default_factory() if f.default is MISSING else f.default
        shown = json.dumps(value) if isinstance(value, dict) else str(value)
        assert next(a.help for a in opts if a.dest == f.name).endswith(f"(default: {shown})"), f.name
    assert train.format_help().count("(default:") == len(opts)


def test_train_algo_lists_every_algorithm_the_trainer_runs():
    text = flat(subcommand("train").format_help())
    assert "--algo {grpo,ppo,dapo,reinforce_pp,sft}" in text
    for algo in ("grpo", "ppo", "dapo", "reinforce_pp", "sft"):
        assert config_from_args(build_parser().parse_args(["train", "--algo", algo, "--data", "t.jsonl"])).algo == algo


def test_train_enumerated_options_list_their_choices(monkeypatch):
    monkeypatch.setitem(GROUP_REWARDS, "my_group_reward", GROUP_REWARDS["r1_searcher_pp"])
    train = subcommand("train")
    want = {"--dtype": {"auto", "float32", "bfloat16", "float16"}, "--rollout-backend": {"hf", "vllm"},
            "--loss-agg-mode": {"token-mean", "seq-mean-token-mean"}, "--group-reward": set(GROUP_REWARDS),
            "--protocol": set(PROTOCOLS), "--reward": set(REWARD_PRESETS)}
    text = flat(train.format_help())
    for a in options(train):
        if a.option_strings[0] in want:
            assert set(a.choices) == want.pop(a.option_strings[0])
            assert f"{a.option_strings[0]} {{{','.join(a.choices)}}}" in text
    assert not want, f"not enumerated: {want}"
    with pytest.raises(ValueError, match="group_reward must be one of .*'my_group_reward'"):
        TrainConfig(group_reward="nope")


def test_option_help_is_the_first_sentence_of_the_field_docstring():
    @dataclass
    class Config:
        keep: float = 0.5
        """Share of passages kept, 50% by default, e.g. 0.5 (docs/x.md). Where it comes from: elsewhere."""
        undocumented: int = 1

    helps = field_help(Config)
    assert helps == {"keep": "Share of passages kept, 50% by default, e.g. 0.5 (docs/x.md)."}
    p = argparse.ArgumentParser()
    p.add_argument("--keep", help=with_default(helps["keep"], 0.5))
    assert "50% by default, e.g. 0.5 (docs/x.md). (default: 0.5)" in flat(p.format_help())


@pytest.mark.parametrize("command", ["run", "play", "train"])
def test_protocol_help_names_every_registered_protocol(command, monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "my_protocol", SearchR1Protocol)
    [protocol] = [a for a in options(subcommand(command)) if "--protocol" in a.option_strings]
    assert set(protocol.choices) == set(PROTOCOLS) and len(PROTOCOLS) >= 11
    assert all(name in flat(subcommand(command).format_help()) for name in PROTOCOLS)


def test_bench_help_lists_every_suite_its_error_names(monkeypatch):
    monkeypatch.setitem(SUITES, "my_suite", SUITES["quick"])
    [suite] = [a for a in options(subcommand("bench")) if a.dest == "suite"]
    with pytest.raises(FileNotFoundError) as missing:
        load_suite("no-such-suite")
    for name in SUITES:
        assert re.search(rf"\b{name}\b", suite.help) and re.search(rf"\b{name}\b", str(missing.value)), name


def test_docs_table_lists_every_builtin_suite():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    table = docs[docs.index("## Built-in suites"):docs.index("## Your own suite")]
    assert {row.split("`")[1] for row in table.splitlines() if row.startswith("| `")} == set(SUITES)


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "title": f"T{i}", "text": f"text {i} about lakes"}) + "\n"
                            for i in range(12)), encoding="utf-8")
    return path


def test_manifest_stores_the_corpus_as_an_absolute_path(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = build_index("corpus.jsonl", "bm25", "idx", show_progress=False)
    assert read_manifest(out)["corpus"] == str(corpus.resolve())


def test_broken_index_advice_fits_where_the_index_is(corpus, tmp_path, tmp_cache):
    own = build_index(corpus, "bm25", tmp_path / "mine", show_progress=False)
    (own / "manifest.json").unlink()
    with pytest.raises(BrokenIndexError) as mine:
        load_index(own)
    assert "search-envs index build" in str(mine.value) and "rebuilt on first use" not in str(mine.value)

    cached = cached_index_dir("bm25", corpus)
    shutil.copytree(tmp_path / "mine", cached)
    with pytest.raises(BrokenIndexError) as theirs:
        load_index(cached)
    assert f"delete {cached.resolve()}" in str(theirs.value) and "rebuilt on first use" in str(theirs.value)


def test_the_first_simulated_search_says_what_it_is_loading(tmp_path, capsys):
    from search_envs.engines.simulated import SimulatedEngine
    from search_envs.generation import TransformersGenerator
    from search_envs.types import QueryContext

    engine = SimulatedEngine(TransformersGenerator(tmp_path / "no-such-model"), cache=False)
    [first] = engine.search(["capital of France"], 3, [QueryContext(question="q", answers=("Paris",))])
    err = capsys.readouterr().err
    assert "loads the model" in err and "no-such-model" in err
    engine.search(["capital of Spain"], 3, [QueryContext(question="q", answers=("Madrid",))])
    assert "loads the model" not in capsys.readouterr().err  # said once


@pytest.mark.slow
def test_a_dense_build_says_what_it_encodes_and_roughly_how_long(corpus, tmp_path, capsys):
    from search_envs.engines.dense import build_notice

    build_index(corpus, "dense", tmp_path / "dense", show_progress=True)
    err = capsys.readouterr().err
    assert "dense index: encoding 12 passages with all-MiniLM-L6-v2 on cpu, under a minute" in err
    assert "done once" in err and err.index("done once") < err.index("encoding (")  # the line, then the bar
    # the embedded corpus: the ~5 minutes `bench --suite quick` spends once on its dense recall column
    assert "roughly 5 min on a 2-core CPU" in build_notice(10_365, "sentence-transformers/all-MiniLM-L6-v2", "cpu")
    assert "the bar below estimates how long" in build_notice(10_365, "intfloat/e5-base-v2", "cpu")


def test_bench_says_why_it_builds_a_recall_index_first(bm25_engine, monkeypatch, tmp_path):
    from search_envs.bench import recall_index_notice

    assert recall_index_notice("bm25", 3) is None  # in the cache: nothing to say
    monkeypatch.setenv("SEARCH_ENVS_CACHE", str(tmp_path / "empty-cache"))
    notice = recall_index_notice("dense", 3)
    assert notice.startswith("bench: the 'dense recall@3' column needs a dense index") and "empty-cache" in notice
    assert "a bm25 and a dense index" in recall_index_notice("hybrid", 5)


@pytest.mark.slow
def test_a_bench_run_announces_the_recall_index_it_builds(corpus, tmp_path, tmp_cache, capsys):
    """A dense env over a 12-passage index, BM25 recall in an empty cache: the run says why it
    builds the BM25 index of the embedded corpus (seconds; the dense one of `quick` takes minutes)."""
    from search_envs.bench import run_suite
    from search_envs.policies import make_policy

    index = build_index(corpus, "dense", tmp_path / "dense", show_progress=False)
    suite = {"name": "s", "env": "SearchEnvs/WikiDense-v0", "env_kwargs": {"index_dir": str(index)},
             "recall_engines": ["bm25"], "datasets": {"ramp": {"tasks": "ramp:test", "n": 1}}}
    run_suite(suite, {"oracle": make_policy("oracle")}, tmp_path / "out", batch_size=1)
    err = capsys.readouterr().err
    assert "bench: the 'bm25 recall@3' column needs a bm25 index of the embedded corpus" in err
    assert err.index("needs a bm25 index") < err.index("bm25: analyse")  # said before the build starts
    run_suite(suite, {"oracle": make_policy("oracle")}, tmp_path / "again", batch_size=1)
    assert "needs a bm25 index" not in capsys.readouterr().err  # the first run cached it


def test_readme_protocols_table_lists_every_registered_protocol():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Protocols"):readme.index("## Rewards")]
    rows = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    names = {name for cell in rows for name in re.findall(r"`(\w+)`", cell)}
    assert names == set(PROTOCOLS)
