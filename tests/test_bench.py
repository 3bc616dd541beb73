"""Benchmark suites: declarative files, results files, resuming after a kill, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_envs.bench import SUITES, load_suite, read_records, results_table, run_suite
from search_envs.cli import main
from search_envs.policies import make_policy
from search_envs.rewards import METRICS, PAPER_METRICS

REPO = Path(__file__).resolve().parents[1]

SLOW_POLICY = '''
import time
from search_envs.policies.actions import answer_action, search_action
from search_envs.policies.base import question_of

def act(batch):
    time.sleep(0.05)
    return [search_action("search_r1", question_of(h)) if len(h) == 1 else answer_action("search_r1", "x")
            for h in batch]
'''


def small_suite(n: int = 4) -> dict:
    return {"name": "tiny", "env": "SearchEnvs/WikiBM25-v0", "env_kwargs": {"top_k": 2, "max_turns": 3},
            "recall_engines": ["bm25"], "datasets": {"ramp": {"tasks": "ramp:test", "n": n}}}


def test_suites_are_declarative_and_checked(tmp_path):
    assert set(SUITES) >= {"quick", "standard"}
    assert list(load_suite("standard")["datasets"]) == ["nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique",
                                                        "bamboogle"]
    toml = tmp_path / "mine.toml"
    toml.write_text('env = "SearchEnvs/WikiBM25-v0"\n[datasets.ramp]\ntasks = "ramp:test"\nn = 3\n')
    assert load_suite(toml)["name"] == "mine" and load_suite(toml)["datasets"]["ramp"]["n"] == 3
    bad = tmp_path / "bad.json"
    for text, msg in [("{", "not valid json"), ('{"datasets": {}}', "non-empty"),
                      ('{"datasets": {"a": {"n": 2}}}', "'tasks'"), ('{"datasets": {"a": {"tasks": "x", "n": 0}}}', "positive")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=msg):
            load_suite(bad)
    with pytest.raises(FileNotFoundError, match="no suite"):
        load_suite(tmp_path / "missing.json")


def test_run_suite_writes_tables_chart_and_trajectories(tmp_path):
    policies = {"oracle": make_policy("oracle"), "random": make_policy("random")}
    results = run_suite(small_suite(4), policies, tmp_path, progress=False)
    for name in ("results.md", "results.json", "results.png", "oracle.jsonl", "random.jsonl"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0
    records = read_records(tmp_path / "oracle.jsonl")
    assert len(records) == 4 and all(r["trajectory"] and r["dataset"] == "ramp" for r in records)
    oracle = results["policies"]["oracle"]["ramp"]
    # the oracle's EM is the engine's answer recall for the question-as-query
    assert oracle["em"] == pytest.approx(results["recall"]["bm25"]["ramp"])
    table = (tmp_path / "results.md").read_text()
    for column in ("EM", "F1", "cover-EM", "searches/q", "tokens/q", "wall s/q", "bm25 recall@2"):
        assert column in table
    assert json.loads((tmp_path / "results.json").read_text())["policies"]["random"]["ramp"]["n"] == 4
    assert results_table(results).count("\n") == 2 + 2  # header, rule, 2 policies x ramp (no average of one)


def test_truncated_last_line_is_dropped_and_replayed(tmp_path):
    run_suite(small_suite(3), {"oracle": make_policy("oracle")}, tmp_path, progress=False)
    path = tmp_path / "oracle.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 10])  # last record cut mid-line
    assert len(read_records(path)) == 2
    results = run_suite(small_suite(3), {"oracle": make_policy("oracle")}, tmp_path, progress=False)
    ids = [r["id"] for r in read_records(path)]
    assert len(ids) == 3 == len(set(ids)) and results["policies"]["oracle"]["ramp"]["n"] == 3
    path.write_text('{"ok": 1}\nnot json\n{"ok": 2}\n')
    with pytest.raises(ValueError, match=":2: not a JSON record"):
        read_records(path)


def test_results_count_only_the_questions_of_this_run(tmp_path):
    run_suite(small_suite(3), {"oracle": make_policy("oracle")}, tmp_path, progress=False)
    results = run_suite(small_suite(3), {"oracle": make_policy("oracle")}, tmp_path, n=2, progress=False)
    assert results["policies"]["oracle"]["ramp"]["n"] == 2 and len(read_records(tmp_path / "oracle.jsonl")) == 3


@pytest.mark.slow
def test_bench_resumes_after_being_killed(tmp_path):
    (tmp_path / "slowpolicy.py").write_text(SLOW_POLICY)
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(small_suite(24)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "search_envs.cli", "bench", "--policy", "callable:slowpolicy:act",
           "--suite", str(suite), "--out", str(out), "--batch-size", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    jsonl = out / "callable_slowpolicy_act.jsonl"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not jsonl.is_file() or jsonl.read_text().count("\n") < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_records(jsonl)
    assert 4 <= len(before) < 24, "the run should have been killed mid-way"
    assert not (out / "results.md").exists()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    after = read_records(jsonl)
    ids = [r["id"] for r in after]
    assert len(ids) == 24 and len(set(ids)) == 24  # nothing lost, nothing twice
    assert after[: len(before)] == before  # finished records were kept as written
    assert json.loads((out / "results.json").read_text())["policies"]["callable:slowpolicy:act"]["ramp"]["n"] == 24


def test_standard_suite_uses_the_shared_samples(shared_data, tmp_path):
    suite = load_suite("standard")
    suite["recall_engines"] = ["bm25"]  # the dense index would be built on first use: minutes
    results = run_suite(suite, {"oracle": make_policy("oracle")}, tmp_path, n=2, progress=False)
    rows = results["policies"]["oracle"]
    assert set(rows) == {"nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle", "average"}
    assert all(rows[d]["n"] == 2 for d in rows if d != "average") and rows["average"]["n"] == 14


@pytest.mark.parametrize("paper", ["search_r1", "r1_searcher"])
def test_a_suite_reports_its_papers_metrics_beside_ours(tmp_path, paper):
    suite = {**small_suite(4), "paper": paper, "datasets": {"a": {"tasks": "ramp:test", "n": 3},
                                                            "b": {"tasks": "ramp:test", "n": 2}}}
    results = run_suite(suite, {"oracle": make_policy("oracle")}, tmp_path, progress=False)
    table = (tmp_path / "results.md").read_text()
    records = read_records(tmp_path / "oracle.jsonl")
    for name in PAPER_METRICS[paper]:
        assert f"| {name} " in table
        for dataset in ("a", "b"):
            rows = [r for r in records if r["dataset"] == dataset]
            want = sum(METRICS[name](r["prediction"], r["answers"]) for r in rows) / len(rows)
            assert results["policies"]["oracle"][dataset][name] == pytest.approx(want)
        average = results["policies"]["oracle"]["average"][name]
        assert average == pytest.approx((results["policies"]["oracle"]["a"][name] + results["policies"]["oracle"]["b"][name]) / 2)
    assert load_suite("standard")["paper"] == "search_r1" and load_suite("r1_searcher")["paper"] == "r1_searcher"
    assert "search_r1_em" not in results_table({**results, "paper": None})
    with pytest.raises(ValueError, match="suite paper 'nope'"):
        load_suite({**small_suite(), "paper": "nope"})


def test_cli_run_prints_a_results_table(capsys):
    assert main(["run", "--policy", "oracle", "--episodes", "3", "--tasks", "ramp:test"]) == 0
    out = capsys.readouterr().out
    assert "| oracle | ramp:test | 3 |" in out
    assert main(["run", "--policy", "no-such-policy", "--episodes", "1"]) == 2
    assert "unknown policy" in capsys.readouterr().err


def test_cli_bench(tmp_path, capsys):
    suite = tmp_path / "s.json"
    suite.write_text(json.dumps(small_suite(2)))
    assert main(["bench", "--policy", "oracle", "--policy", "random", "--suite", str(suite), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "| oracle | ramp |" in out and "| random | ramp |" in out and (tmp_path / "o" / "results.png").is_file()
