"""Index directories: manifest, save/load round trip, atomic build, corruption, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from search_envs.cli import main
from search_envs.corpus import CorpusFormatError, embedded_subset_path, file_sha256
from search_envs.index import BrokenIndexError, build_index, check_index, load_index

HAMLET_Q = "Who wrote the tragedy Hamlet, Prince of Denmark?"


@pytest.fixture(scope="module")
def corpus():
    return embedded_subset_path(30, include=("Hamlet", "Jupiter"))


@pytest.fixture(scope="module")
def bm25_dir(corpus, tmp_path_factory):
    return build_index(corpus, "bm25", tmp_path_factory.mktemp("bm25") / "idx", show_progress=False)


@pytest.fixture(scope="module")
def encoder():
    from search_envs.engines.dense import load_encoder

    return load_encoder()


@pytest.fixture(scope="module")
def dense_dir(corpus, encoder, tmp_path_factory):
    return build_index(corpus, "dense", tmp_path_factory.mktemp("dense") / "idx", encoder=encoder, show_progress=False)


@pytest.fixture()
def bm25_copy(bm25_dir, tmp_path):
    """A private copy to damage."""
    return shutil.copytree(bm25_dir, tmp_path / "copy")


def test_manifest_describes_the_build(bm25_dir, corpus):
    manifest = check_index(bm25_dir, deep=True)
    assert manifest["format_version"] == 1 and manifest["kind"] == "bm25"
    assert manifest["corpus"] == str(corpus) and manifest["corpus_sha256"] == file_sha256(corpus)
    assert manifest["records"] == 30 and manifest["passages"] >= 30
    assert manifest["created"].endswith("Z")
    for name in ("passages.zst", "passages.dict", "offsets.npy", "bm25/vocab.json"):
        assert manifest["files"][name]["bytes"] == (bm25_dir / name).stat().st_size
    assert not list(bm25_dir.parent.glob("*.tmp-*"))


def test_bm25_round_trip_gives_the_same_results(bm25_dir):
    first, second = load_index(bm25_dir), load_index(bm25_dir, kind="bm25")
    queries = [HAMLET_Q, "largest planet", "", "Denmark"]
    assert first.search(queries, 4) == second.search(queries, 4)
    assert first.search([HAMLET_Q], 1)[0][0].title == "Hamlet"
    first.close()
    second.close()


@pytest.mark.slow
def test_dense_round_trip_and_manifest(dense_dir, encoder, corpus):
    manifest = check_index(dense_dir, kind="dense", corpus=corpus, deep=True)
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2" and manifest["dim"] == 384
    assert manifest["faiss"] == "flat" and manifest["query_prefix"] == ""
    a, b = load_index(dense_dir, encoder=encoder), load_index(dense_dir)  # b loads the encoder the manifest names
    queries = [HAMLET_Q, "largest planet"]
    ra, rb = a.search(queries, 3), b.search(queries, 3)
    assert [[d.id for d in docs] for docs in ra] == [[d.id for d in docs] for docs in rb]
    assert ra[0][0].title == "Hamlet" and ra[1][0].title == "Jupiter"


@pytest.mark.slow
def test_hybrid_build_writes_the_passage_store_once(corpus, encoder, bm25_dir, tmp_path):
    """A hybrid's two parts hold the same passage store: written for bm25/, linked into
    dense/ (the same bytes as a bm25 build's, counted alike); both parts load and search."""
    import os

    out = build_index(corpus, "hybrid", tmp_path / "hybrid", encoder=encoder, show_progress=False)
    manifest = check_index(out, kind="hybrid", corpus=corpus, deep=True)
    parts = {part: check_index(out / part, corpus=corpus, deep=True) for part in ("bm25", "dense")}
    for name in ("passages.zst", "passages.dict", "offsets.npy"):
        assert os.path.samefile(out / "bm25" / name, out / "dense" / name), name
        assert (out / "dense" / name).read_bytes() == (bm25_dir / name).read_bytes(), name
    counts = ("records", "passages", "bad_lines_skipped", "corpus_sha256", "passage_words")
    assert [parts["bm25"][k] for k in counts] == [parts["dense"][k] for k in counts]
    assert parts["dense"]["corpus_sha256"] == manifest["corpus_sha256"] == file_sha256(corpus)
    engine = load_index(out, encoder=encoder)
    assert engine.search([HAMLET_Q], 1)[0][0].title == "Hamlet"
    engine.close()


@pytest.mark.parametrize("name", ["passages.zst", "offsets.npy", "bm25/postings.bin", "bm25/vocab.json"])
def test_deleted_file_is_named(bm25_copy, name):
    (bm25_copy / name).unlink()
    with pytest.raises(BrokenIndexError, match=f"{name}: file missing.*search-envs index build"):
        load_index(bm25_copy)


@pytest.mark.parametrize("name", ["passages.zst", "bm25/offsets.npy"])
def test_truncated_file_is_named(bm25_copy, name):
    path = bm25_copy / name
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BrokenIndexError, match=f"{name}: .*truncated"):
        load_index(bm25_copy)


@pytest.mark.slow
def test_truncated_faiss_index_is_named(dense_dir, tmp_path):
    copy = shutil.copytree(dense_dir, tmp_path / "d")
    (copy / "faiss.index").write_bytes((copy / "faiss.index").read_bytes()[:1000])
    with pytest.raises(BrokenIndexError, match="faiss.index"):
        load_index(copy)


def test_same_size_corruption_is_caught_by_deep_check_and_load(bm25_copy):
    path = bm25_copy / "bm25" / "vocab.json"
    path.write_bytes(b"\xff" * path.stat().st_size)
    check_index(bm25_copy)  # sizes still match
    with pytest.raises(BrokenIndexError, match="sha256"):
        check_index(bm25_copy, deep=True)
    with pytest.raises(BrokenIndexError, match="vocab.json: sha256"):
        load_index(bm25_copy)  # sha256 sums are checked on load by default
    with pytest.raises(BrokenIndexError, match="cannot be loaded"):
        load_index(bm25_copy, verify=False)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "missing manifest"),
        ("{garbage", "not valid JSON"),
        ('["a list"]', "no file list"),
        ('{"files": {}, "format_version": 99, "kind": "bm25"}', "unknown format version 99"),
        ('{"files": {}, "format_version": 1, "kind": "tfidf"}', "unknown engine kind 'tfidf'"),
    ],
)
def test_bad_manifest(bm25_copy, content, message):
    manifest = bm25_copy / "manifest.json"
    if content is None:
        manifest.unlink()
    else:
        manifest.write_text(content)
    with pytest.raises(BrokenIndexError, match=message):
        load_index(bm25_copy)


def test_wrong_kind_missing_dir_and_mismatched_corpus(bm25_dir, tmp_path):
    with pytest.raises(BrokenIndexError, match="bm25 index, not dense"):
        load_index(bm25_dir, kind="dense")
    with pytest.raises(BrokenIndexError, match="no such index directory"):
        load_index(tmp_path / "nothing")
    other = embedded_subset_path(31, include=("Hamlet", "Jupiter"))
    with pytest.raises(BrokenIndexError, match="different corpus"):
        load_index(bm25_dir, corpus=other)
    assert isinstance(BrokenIndexError("x", "y"), ValueError)


def test_failed_build_leaves_no_directory(corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join(lines[:20] + ["{truncated"] + lines[20:]) + "\n", encoding="utf-8")
    out = tmp_path / "idx"
    with pytest.raises(CorpusFormatError, match=r"bad\.jsonl:21"):
        build_index(bad, "bm25", out, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]

    skipped = build_index(bad, "bm25", out, skip_bad=True, show_progress=False)
    assert check_index(skipped)["bad_lines_skipped"] == 1


def test_failure_inside_the_engine_build_leaves_no_directory(corpus, tmp_path, monkeypatch):
    from search_envs.engines.bm25 import BM25Engine

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(BM25Engine, "build", staticmethod(crash))
    with pytest.raises(RuntimeError, match="disk full"):
        build_index(corpus, "bm25", tmp_path / "idx")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(bm25_copy, corpus):
    with pytest.raises(FileExistsError):
        build_index(corpus, "bm25", bm25_copy, show_progress=False)
    (bm25_copy / "offsets.npy").unlink()
    build_index(corpus, "bm25", bm25_copy, overwrite=True, show_progress=False)
    check_index(bm25_copy, deep=True)
    assert not list(bm25_copy.parent.glob("copy.*"))


def test_build_rejects_unknown_kind_and_params(corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown engine kind"):
        build_index(corpus, "tfidf", tmp_path / "a")
    with pytest.raises(ValueError, match="for bm25: model"):
        build_index(corpus, "bm25", tmp_path / "b", model="x")
    with pytest.raises(ValueError, match="no passages"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text("\n")
        build_index(empty, "bm25", tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl"]


def test_cli_build_and_info(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["index", "build", "--corpus", str(corpus), "--kind", "bm25", "--out", str(out), "--k1", "1.2"]) == 0
    assert "valid bm25 index" in capsys.readouterr().out
    assert main(["index", "info", str(out), "--corpus", str(corpus)]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads(printed[: printed.index("\n}") + 2])
    assert manifest["k1"] == 1.2 and manifest["kind"] == "bm25"
    assert "sha256 sums checked" in printed

    assert main(["index", "build", "--corpus", str(corpus), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    (out / "manifest.json").write_text("{garbage")
    assert main(["index", "info", str(out)]) == 2
    assert "manifest.json: manifest is not valid JSON" in capsys.readouterr().err


def test_cli_output_into_a_closed_pipe_stops_quietly(corpus, tmp_path):
    """`search-envs index info DIR | head`: the reader goes away before the output is written;
    the command stops with SIGPIPE's exit status and no traceback."""
    out = tmp_path / "cli"
    assert main(["index", "build", "--corpus", str(corpus), "--kind", "bm25", "--out", str(out)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "search_envs.cli", "index", "info", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command has imported anything, let alone printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
