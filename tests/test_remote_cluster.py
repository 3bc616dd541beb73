"""RemoteEngine over several real `search-envs serve` processes on 127.0.0.1: replicas
(load spread, failover when one is killed mid-run, health checks bring it back) and shards
(each holds part of the corpus; merged top-k equals one index over the whole corpus)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import wait_until

from search_envs.engines import load_index
from search_envs.engines.base import SearchFailure
from search_envs.engines.remote import RemoteEngine, merge_ranked
from search_envs.index_import import import_faiss_index
from search_envs.server import running_server
from search_envs.types import Document
from tests.searchr1_layout import MINILM, write_layout
from tests.serve_process import Server

QUERIES = ["Who wrote Hamlet?", "capital of France", "photosynthesis in plants", "Mount Everest height",
           "theory of relativity", "the French Revolution", "largest ocean on Earth", "Roman Empire fall",
           "DNA double helix", "first man on the moon", "Great Wall of China", "speed of light"]


def ids(results):
    return [[d.id for d in docs] for docs in results]


def test_merge_ranked_is_stable_and_by_score():
    a = [Document("a1", "", "", 0.9), Document("a2", "", "", 0.5)]
    b = [Document("b1", "", "", 0.9), Document("b2", "", "", 0.7), Document("b3", "", "", 0.1)]
    assert [d.id for d in merge_ranked([a, b], 4)] == ["a1", "b1", "b2", "a2"]
    assert merge_ranked([[], []], 3) == []
    with pytest.raises(ValueError):
        RemoteEngine("http://127.0.0.1:1", shards=["http://127.0.0.1:2"])
    with pytest.raises(ValueError):
        RemoteEngine(shards=[[]])


@pytest.mark.slow
def test_replicas_spread_load_fail_over_and_come_back(bm25_engine):
    servers = [Server(bm25_engine.directory), Server(bm25_engine.directory)]
    try:
        for s in servers:
            s.wait_ready()
        # timeout: a restarted server's first search can take seconds on a loaded machine; nothing here waits for it
        remote = RemoteEngine([s.url for s in servers], timeout=60, retries=1, backoff=0.05, health_interval=0.2)
        want = ids(bm25_engine.search(QUERIES, 3))
        batches = [QUERIES[i % 12 : i % 12 + 3] or QUERIES[:3] for i in range(120)]
        expected = {tuple(b): ids(bm25_engine.search(b, 3)) for b in batches}

        def run(batch):
            return batch, remote.search(batch, 3)

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(run, b) for b in batches]
            for f in futures[:30]:
                f.result(timeout=60)
            servers[0].kill()  # mid-run: in-flight and later requests fail over
            results = [f.result(timeout=60) for f in futures]  # a hang fails here
        for batch, got in results:  # no lost query: every one answered, and correctly
            assert not any(isinstance(r, SearchFailure) for r in got)
            assert ids(got) == expected[tuple(batch)]
        shard = remote.shards[0]
        assert shard.sent[servers[0].url + "/retrieve"] > 0 and shard.sent[servers[1].url + "/retrieve"] > 0
        assert servers[0].url + "/retrieve" in shard.down

        # the health check brings the restarted server back into rotation
        servers[0] = Server(bm25_engine.directory, port=servers[0].port).wait_ready()
        wait_until(lambda: not shard.down, 30, "the restarted server back in rotation")  # health checks every 0.2 s
        before = shard.sent[servers[0].url + "/retrieve"]
        assert ids(remote.search(QUERIES, 3)) == want
        assert ids(remote.search(QUERIES, 3)) == want
        assert shard.sent[servers[0].url + "/retrieve"] > before

        # every replica dead: a SearchFailure for each query, quickly
        for s in servers:
            s.kill()
        start = time.monotonic()
        failed = remote.search(QUERIES[:2], 3)
        assert all(isinstance(r, SearchFailure) and "all 2 replicas" in r.error for r in failed)
        assert time.monotonic() - start < 10  # 4 refused connections and a 0.05 s backoff; no wait for the 60 s timeout
        assert remote.health() == {s.url + "/retrieve": False for s in servers}
        remote.close()
    finally:
        for s in servers:
            s.stop()


@pytest.mark.slow
def test_merged_dense_shards_rank_exactly_as_one_index(tmp_path, minilm_passages):
    """Dense Flat shards over two halves of a corpus (real MiniLM vectors), each served over
    HTTP: merged top-10 equals the top-10 of one index over the whole corpus (ids, order,
    scores). The shard servers run in this process (`running_server`, the app `serve` runs)
    so the encoder is loaded once; killing real `serve` processes is the replica test's job."""
    encoder, passages, vectors = minilm_passages
    passages, vectors = passages[:160], vectors[:160]
    corpus, index = write_layout(tmp_path / "whole", passages, vectors)
    one = load_index(import_faiss_index(index, corpus, tmp_path / "whole-idx", model=MINILM, progress=False),
                     encoder=encoder)
    shards = []
    for i, (lo, hi) in enumerate(((0, 80), (80, 160))):
        corpus, index = write_layout(tmp_path / f"s{i}", passages[lo:hi], vectors[lo:hi], first_id=lo)
        shards.append(load_index(import_faiss_index(index, corpus, tmp_path / f"s{i}-idx", model=MINILM,
                                                    progress=False), encoder=encoder))
    queries = QUERIES + ["Abraham Lincoln", "Ada Lovelace computer", "Achilles heel", "acid rain pollution"]
    with running_server(shards[0]) as url0:
        with running_server(shards[1]) as url1:
            remote = RemoteEngine(shards=[url0, url1], timeout=30, retries=0)
            got, want = remote.search(queries, 10), one.search(queries, 10)
            assert ids(got) == ids(want)
            seen = {d.id for docs in got for d in docs}
            assert seen & {str(i) for i in range(80)} and seen & {str(i) for i in range(80, 160)}  # both contribute
            np.testing.assert_allclose([d.score for docs in got for d in docs],
                                       [d.score for docs in want for d in docs], rtol=1e-4, atol=1e-5)
            assert [d.text for d in got[0]] == [d.text for d in want[0]]
        failed = remote.search(queries[:2], 3)  # shard 1 is gone and has no replica: the agent is told
        assert all(isinstance(r, SearchFailure) and "unavailable" in r.error for r in failed)
        remote.close()
    one.close()
