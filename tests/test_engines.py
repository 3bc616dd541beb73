"""BM25, dense and hybrid engines on real Wikipedia text and the real MiniLM encoder.

BM25 runs on the whole embedded corpus (10,033 lead sections). Encoding that on
2 CPU cores takes minutes (see benchmarks/README.md), so dense tests use 100
embedded articles (Hamlet included) and the faiss variants 40.
"""

from __future__ import annotations

import threading

import pytest

from search_envs.corpus import embedded_subset_path
from search_envs.engines import live_queries, open_engine
from search_envs.engines.hybrid import HybridEngine, reciprocal_rank_fusion
from search_envs.index import build_index, load_index
from search_envs.types import Document

HAMLET_Q = "Who wrote the tragedy Hamlet, Prince of Denmark?"
QUERIES = [
    HAMLET_Q,
    "largest planet of the solar system",
    "highest mountain on Earth above sea level",
    "how do plants turn light into chemical energy",
    "capital of Japan",
]
INCLUDE = ("Hamlet", "William Shakespeare", "Jupiter", "Mount Everest", "Photosynthesis", "Tokyo", "São Paulo")
EXPECTED_TOP1 = ["Hamlet", "Jupiter", "Mount Everest", "Photosynthesis", "Tokyo"]


@pytest.fixture(scope="module")
def encoder():
    from search_envs.engines.dense import load_encoder

    return load_encoder()


@pytest.fixture(scope="module")
def small_corpus():
    return embedded_subset_path(100, include=INCLUDE)


@pytest.fixture(scope="module")
def dense_engine(small_corpus, encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense") / "idx"
    build_index(small_corpus, "dense", out, encoder=encoder, show_progress=False)
    engine = load_index(out, encoder=encoder)
    yield engine
    engine.close()


def titles(docs: list[Document]) -> list[str]:
    return [d.title for d in docs]


def assert_well_formed(results, queries, k):
    assert len(results) == len(queries)
    for docs in results:
        assert len(docs) <= k
        assert all(isinstance(d, Document) and d.title and d.text for d in docs)
        assert [d.score for d in docs] == sorted((d.score for d in docs), reverse=True)


def test_live_queries_skips_empty_and_whitespace():
    assert live_queries(["a", "", "  \n\t", "b "]) == [0, 3]


# ---------------------------------------------------------------- BM25 (whole embedded corpus)


@pytest.mark.slow
def test_bm25_finds_hamlet_in_top3(bm25_engine):
    [docs] = bm25_engine.search([HAMLET_Q], 3)
    assert "Hamlet" in titles(docs)
    assert len(bm25_engine.store) > 10033  # long leads were chunked into ~100-word passages


@pytest.mark.slow
def test_bm25_batched_equals_one_at_a_time(bm25_engine):
    batched = bm25_engine.search(QUERIES, 5)
    assert_well_formed(batched, QUERIES, 5)
    assert batched == [bm25_engine.search_one(q, 5) for q in QUERIES]
    assert titles(batched[0])[0] == "Hamlet"
    assert "Photosynthesis" in titles(batched[3]) and "Japan" in titles(batched[4])


def test_bm25_edge_queries(bm25_engine):
    huge = "Shakespeare " + "lorem ipsum dolor sit amet " * 4000  # ~100 KB
    assert len(huge.encode()) > 100_000
    queries = ["", "   \n", "São Paulo Brazil city", huge, "the of and", "zzqxjw"]
    results = bm25_engine.search(queries, 3)
    assert_well_formed(results, queries, 3)
    assert results[0] == results[1] == []
    assert "São Paulo" in titles(results[2])
    assert results[3]  # a huge query is answered, not rejected
    assert results[4] == [] and results[5] == []  # stop words only / unknown word: nothing matches
    assert bm25_engine.search([], 3) == []
    assert bm25_engine.search([HAMLET_Q], 0) == [[]]


@pytest.mark.slow
def test_bm25_k_larger_than_corpus(small_corpus, tmp_path):
    engine = load_index(build_index(small_corpus, "bm25", tmp_path / "bm25", show_progress=False))
    [docs] = engine.search(["the history and people of the city"], 10_000)
    assert 0 < len(docs) <= len(engine.store)
    assert len({d.id for d in docs}) == len(docs)
    engine.close()


# ---------------------------------------------------------------- dense (100 embedded articles)


@pytest.mark.slow
def test_dense_finds_hamlet_in_top3_and_batches_equal_singles(dense_engine):
    batched = dense_engine.search(QUERIES, 3)
    assert_well_formed(batched, QUERIES, 3)
    assert "Hamlet" in titles(batched[0])
    assert [t[0] for t in map(titles, batched)] == EXPECTED_TOP1
    for query, docs in zip(QUERIES, batched):
        single = dense_engine.search_one(query, 3)
        assert [d.id for d in single] == [d.id for d in docs]
        assert [d.score for d in single] == pytest.approx([d.score for d in docs], abs=1e-4)


@pytest.mark.slow
def test_dense_edge_queries_and_k_larger_than_corpus(dense_engine):
    huge = "x" * 100_000
    results = dense_engine.search(["", " ", "São Paulo, Brazil", huge], 2)
    assert results[0] == results[1] == []
    assert "São Paulo" in titles(results[2])
    assert len(results[3]) == 2  # truncated by the tokenizer, still answered
    n = len(dense_engine.store)
    [everything] = dense_engine.search([HAMLET_Q], n + 100)
    assert len(everything) == n and len({d.id for d in everything}) == n


@pytest.mark.slow
@pytest.mark.parametrize("faiss_type", ["hnsw", "ivfpq"])
def test_approximate_faiss_indexes_give_sensible_top1(faiss_type, encoder, tmp_path):
    corpus = embedded_subset_path(40, include=INCLUDE)
    out = build_index(corpus, "dense", tmp_path / faiss_type, faiss=faiss_type, encoder=encoder, show_progress=False,
                      **({"hnsw_m": 16, "ef_search": 32} if faiss_type == "hnsw" else {"nprobe": 4}))
    engine = load_index(out, encoder=encoder)
    assert engine.manifest["faiss"] == faiss_type
    assert engine.index.__class__.__name__ == {"hnsw": "IndexHNSWFlat", "ivfpq": "IndexIVFPQ"}[faiss_type]
    results = engine.search(QUERIES, 3)
    assert_well_formed(results, QUERIES, 3)
    assert [t[0] for t in map(titles, results)] == EXPECTED_TOP1
    engine.close()


def test_ivfpq_rejects_pq_m_that_does_not_divide_dim():
    from search_envs.engines.dense import make_faiss_index

    with pytest.raises(ValueError, match="must divide"):
        make_faiss_index("ivfpq", 384, 1000, pq_m=7)
    with pytest.raises(ValueError, match="unknown faiss"):
        make_faiss_index("lsh", 384, 1000)


def test_prefixes_follow_model_family():
    from search_envs.engines.dense import BGE_INSTRUCTION, default_prefixes

    assert default_prefixes("intfloat/e5-base-v2") == ("query: ", "passage: ")
    assert default_prefixes("BAAI/bge-small-en-v1.5") == (BGE_INSTRUCTION, "")
    assert default_prefixes("sentence-transformers/all-MiniLM-L6-v2") == ("", "")


# ---------------------------------------------------------------- hybrid and open_engine


def test_reciprocal_rank_fusion_sums_reciprocal_ranks():
    a, b, c = (Document(i, i.upper(), "t", 9.0) for i in "abc")
    fused = reciprocal_rank_fusion([[a, b], [b, c]], k=3, rrf_k=60)
    assert [d.id for d in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1].score == pytest.approx(1 / 61)
    assert len(reciprocal_rank_fusion([[a, b], [c]], k=1)) == 1


@pytest.mark.slow
def test_hybrid_fuses_bm25_and_dense(dense_engine, small_corpus, tmp_path):
    bm25 = load_index(build_index(small_corpus, "bm25", tmp_path / "bm25", show_progress=False))
    hybrid = HybridEngine(bm25, dense_engine)
    results = hybrid.search(QUERIES + [""], 3)
    assert_well_formed(results, QUERIES + [""], 3)
    assert all(expected in titles(docs) for expected, docs in zip(EXPECTED_TOP1, results))
    assert titles(results[0])[0] == "Hamlet"
    assert results[-1] == []
    assert all(d.score <= 2 / 61 for docs in results for d in docs)  # fused scores, not raw ones


@pytest.mark.slow
def test_open_engine_builds_into_cache_once_and_reuses(tmp_cache, encoder):
    corpus = embedded_subset_path(20, include=("Hamlet",))
    engines: list = []
    threads = [threading.Thread(target=lambda: engines.append(open_engine("bm25", corpus=corpus))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(engines) == 3 and len({e.directory for e in engines}) == 1
    index_dir = engines[0].directory
    assert index_dir.parent == tmp_cache / "indexes" and index_dir.name.startswith("bm25-")
    assert [p.name for p in index_dir.parent.iterdir() if ".tmp-" in p.name] == []
    created = (index_dir / "manifest.json").stat().st_mtime_ns
    again = open_engine("bm25", corpus=corpus)
    assert again.directory == index_dir and (index_dir / "manifest.json").stat().st_mtime_ns == created
    assert titles(again.search_one(HAMLET_Q, 1)) == ["Hamlet"]

    hybrid = open_engine("hybrid", corpus=corpus, encoder=encoder)
    # hybrid fuses the cached indexes: the BM25 one above is reused, not rebuilt
    assert hybrid.bm25.directory == index_dir and (index_dir / "manifest.json").stat().st_mtime_ns == created
    assert hybrid.dense.directory.parent == index_dir.parent
    assert hybrid.dense.directory.name.startswith("dense-") and "all-MiniLM-L6-v2" in hybrid.dense.directory.name
    assert open_engine("dense", corpus=corpus, encoder=encoder).directory == hybrid.dense.directory
    assert titles(hybrid.search_one(HAMLET_Q, 1)) == ["Hamlet"]
    pair = open_engine("hybrid", corpus=corpus, index_dir=(hybrid.bm25.directory, hybrid.dense.directory), encoder=encoder)
    assert pair.search([HAMLET_Q], 3) == hybrid.search([HAMLET_Q], 3)
    for e in engines + [again, hybrid, pair]:
        e.close()


def test_open_engine_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown engine kind"):
        open_engine("tfidf")
