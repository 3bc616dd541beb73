"""IVF-PQ with exact re-ranking (`rerank`): candidates from the compressed index are
re-scored with float16 vectors kept on disk, so the ranking is Flat's wherever the
candidates contain Flat's top-k."""

from __future__ import annotations

import numpy as np
import pytest

from search_envs.engines import build_index, load_index
from search_envs.engines.dense import VECTORS_FILE, rerank_exact


def test_rerank_exact_orders_by_true_score_and_keeps_padding_last():
    vectors = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6]], dtype=np.float16)
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    candidates = np.array([[1, 2, -1, 3, 0], [0, -1, -1, 1, 2]])
    rows, scores = rerank_exact(candidates, queries, vectors, 4)
    assert rows.tolist() == [[0, 3, 2, 1], [1, 2, 0, -1]]
    np.testing.assert_allclose(scores[0], [1.0, 0.8, 0.6, 0.0], atol=1e-3)
    assert scores[1][-1] == 0.0  # the pad row scores 0, as faiss's


@pytest.mark.slow
def test_ivfpq_with_rerank_ranks_like_flat(minilm_passages, tmp_path):
    import json

    encoder, passages, _ = minilm_passages
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "title": p.title, "text": p.text}) + "\n"
                              for i, p in enumerate(passages[:120])))
    flat = load_index(build_index(corpus, "dense", tmp_path / "flat", encoder=encoder, show_progress=False),
                      encoder=encoder)
    out = build_index(corpus, "dense", tmp_path / "pq", faiss="ivfpq", nlist=2, pq_m=48, nprobe=2, rerank=100,
                      encoder=encoder, show_progress=False)
    assert (out / VECTORS_FILE).is_file()
    pq = load_index(out, encoder=encoder)
    assert pq.manifest["faiss_params"]["rerank"] == 100 and pq.rerank == 100
    queries = ["Abraham Lincoln president", "Ada Lovelace", "acid rain", "Achilles Trojan war", "Africa continent"]
    want, got = flat.search(queries, 5), pq.search(queries, 5)
    assert [[d.id for d in docs] for docs in got] == [[d.id for d in docs] for docs in want]
    np.testing.assert_allclose([d.score for docs in got for d in docs], [d.score for docs in want for d in docs],
                               atol=2e-3)  # float16 vectors
    no_rerank = load_index(build_index(corpus, "dense", tmp_path / "pq0", faiss="ivfpq", nlist=2, pq_m=48, nprobe=2, rerank=0,
                                       encoder=encoder, show_progress=False), encoder=encoder)
    assert not (no_rerank.directory / VECTORS_FILE).exists()
    for engine in (flat, pq, no_rerank):
        engine.close()
