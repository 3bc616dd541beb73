"""`search-envs index import`: a faiss index built the way Search-R1's index_builder builds
it (index_factory "Flat" with inner product over normalised vectors, saved as
`<method>_Flat.index`, row i = line i of a `{"id", "contents"}` corpus), here with the real
MiniLM encoder over real Wikipedia text, adopted without copying and searched by the dense engine."""

from __future__ import annotations

import json
import os

import faiss
import numpy as np
import pytest

from search_envs.cli import main
from search_envs.engines import load_index
from search_envs.index import BrokenIndexError
from search_envs.index_import import import_faiss_index
from tests.searchr1_layout import MINILM, write_layout

pytestmark = pytest.mark.slow

QUERIES = ["who was the 16th president of the united states", "author of the wealth of nations",
           "greek hero of the trojan war", "first computer programmer", "capital of ethiopia"]


@pytest.fixture(scope="module")
def searchr1_layout(tmp_path_factory, minilm_passages):
    """A Search-R1-style corpus jsonl and `minilm_Flat.index` (passage prefix: none for MiniLM)."""
    root = tmp_path_factory.mktemp("searchr1")
    encoder, passages, vectors = minilm_passages
    corpus, index_file = write_layout(root, passages, vectors)
    return root, corpus, index_file, encoder, faiss.read_index(str(index_file)), passages


def expected(encoder, index, queries, prefix=""):
    q = encoder.encode([prefix + x for x in queries], normalize_embeddings=True).astype(np.float32)
    return index.search(q, 3)


def test_imported_index_searches_like_the_original(searchr1_layout, tmp_path):
    root, corpus, index_file, encoder, index, passages = searchr1_layout
    out = import_faiss_index(index_file, corpus, tmp_path / "idx", model=MINILM, progress=False)
    assert (out / "faiss.index").is_symlink() and (out / "passages.jsonl").is_symlink()
    own = sum(p.stat().st_size for p in out.iterdir() if not p.is_symlink())
    assert own < 20_000 < index_file.stat().st_size  # nothing big was copied
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["store"] == "corpus_file" and manifest["passages"] == 240 and manifest["query_prefix"] == ""
    assert manifest["references"]["faiss.index"]["path"] == str(index_file.resolve())
    assert manifest["mmap"] is True  # a Flat index is served memory-mapped, not read into the heap

    engine = load_index(out)  # loads MiniLM itself from the manifest's model
    results = engine.search(QUERIES, 3)
    scores, rows = expected(encoder, index, QUERIES)
    for docs, srow, rrow in zip(results, scores, rows):
        assert [d.id for d in docs] == [str(r) for r in rrow]
        assert [d.title for d in docs] == [passages[r].title for r in rrow]
        assert [d.text for d in docs] == [passages[r].text for r in rrow]
        np.testing.assert_allclose([d.score for d in docs], srow, rtol=1e-4, atol=1e-5)
    assert results[0][0].title == "Abraham Lincoln" and results[3][0].title == "Ada Lovelace"  # real retrieval
    engine.close()


def test_e5_prefixes_are_applied_to_queries(searchr1_layout, tmp_path):
    root, corpus, index_file, encoder, index, _ = searchr1_layout
    out = import_faiss_index(index_file, corpus, tmp_path / "idx", progress=False)  # default: Search-R1's e5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "intfloat/e5-base-v2"
    assert (manifest["query_prefix"], manifest["passage_prefix"]) == ("query: ", "passage: ")
    engine = load_index(out, encoder=encoder)  # e5 is not available offline: MiniLM stands in, same dims
    got = [[d.id for d in docs] for docs in engine.search(QUERIES, 3)]
    _, rows = expected(encoder, index, QUERIES, prefix="query: ")
    _, unprefixed = expected(encoder, index, QUERIES)
    assert got == [[str(r) for r in row] for row in rows]
    assert got != [[str(r) for r in row] for row in unprefixed]  # the prefix changed something


def test_cli_import_info_and_broken_inputs(searchr1_layout, tmp_path, capsys):
    root, corpus, index_file, encoder, index, _ = searchr1_layout
    out = tmp_path / "idx"
    assert main(["index", "import", "--faiss-index", str(index_file), "--corpus", str(corpus), "--out", str(out),
                 "--model", MINILM]) == 0
    assert "valid dense index" in capsys.readouterr().out
    assert main(["index", "import", "--faiss-index", str(index_file), "--corpus", str(corpus), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err

    longer = tmp_path / "longer.jsonl"
    longer.write_text(corpus.read_text() + json.dumps({"id": "x", "contents": '"X"\nextra'}) + "\n")
    with pytest.raises(ValueError, match="240 vectors but .* has 241 passages"):
        import_faiss_index(index_file, longer, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()
    assert main(["index", "import", "--corpus", str(corpus), "--out", str(tmp_path / "x")]) == 2
    with pytest.raises(ValueError, match="is not a faiss index"):
        import_faiss_index(corpus, corpus, tmp_path / "swapped", progress=False)

    moved = tmp_path / "moved.jsonl"  # the corpus changes after the import: loading says so
    moved.write_text(corpus.read_text())
    out2 = import_faiss_index(index_file, moved, tmp_path / "idx2", model=MINILM, progress=False)
    st = moved.stat()
    os.utime(moved, (st.st_atime, st.st_mtime + 10))  # rewritten at the same size: the mtime says so
    with pytest.raises(BrokenIndexError, match="modified since the import"):
        load_index(out2, encoder=encoder)
    os.utime(moved, (st.st_atime, st.st_mtime))
    load_index(out2, encoder=encoder).close()
    with open(moved, "a") as f:
        f.write("\n")
    with pytest.raises(BrokenIndexError, match="imported as"):
        load_index(out2, encoder=encoder)
    os.remove(moved)
    with pytest.raises(BrokenIndexError, match="is gone"):
        load_index(out2, encoder=encoder)


def test_line_offsets_skip_blank_lines_and_keep_rows_contiguous(tmp_path):
    from search_envs.index_import import line_offsets

    cases = {
        b'{"a": 1}\n{"b": 2}\n': [b'{"a": 1}', b'{"b": 2}'],
        b'{"a": 1}\n\n{"b": 2}': [b'{"a": 1}', b'{"b": 2}'],  # a blank line, no final newline
        b'\n{"a": 1}\r\n\r\n7\n': [b'{"a": 1}', b"7"],  # leading blank, CRLF, a one-byte last line
        b"": [],
    }
    for raw, lines in cases.items():
        path = tmp_path / "c.jsonl"
        path.write_bytes(raw)
        offsets = line_offsets(path, progress=False)
        assert offsets[0] == 0 and offsets[-1] == len(raw)
        assert [raw[a:b].strip() for a, b in zip(offsets[:-1], offsets[1:])] == lines
