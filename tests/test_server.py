"""The retrieval server and RemoteEngine, over real HTTP on 127.0.0.1 with the real BM25 index."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from search_envs import SearchEngine, SearchEnv, Task
from search_envs.engines.base import SearchFailure
from search_envs.engines.remote import RemoteEngine, RemoteEngineError
from search_envs.server import ServerLimits, running_server
from search_envs.vector import SearchVectorEnv, make_vec
from tests.serve_process import Server, free_port

QUERIES = ["Who wrote Hamlet?", "capital of France", "photosynthesis in plants", "Mount Everest height"]


class FailingEngine(SearchEngine):
    """The real engine, except that a query containing "boom" makes the call fail
    (a bug or an out-of-memory in a real engine); counts its calls."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine, self.calls = engine, 0

    def search(self, queries, k, contexts=None):
        self.calls += 1
        if any("boom" in q for q in queries):
            raise MemoryError("engine out of memory")
        return self.engine.search(queries, k, contexts)


@pytest.fixture(scope="module")
def engine(bm25_engine):
    return FailingEngine(bm25_engine)


@pytest.fixture(scope="module")
def server(engine):
    limits = ServerLimits(max_queries=16, max_query_chars=200, max_body_bytes=20_000, max_topk=20, max_wait_ms=5)
    with running_server(engine, limits=limits) as url:
        yield url


def expected(bm25_engine, queries, k):
    return [[(d.id, d.contents) for d in docs] for docs in bm25_engine.search(queries, k)]


def passages_to_string(result):
    """Search-R1's `_passages2string`: the title is the first line of `contents`."""
    out = ""
    for idx, item in enumerate(result):
        content = item["document"]["contents"]
        title, text = content.split("\n")[0], "\n".join(content.split("\n")[1:])
        out += f"Doc {idx + 1}(Title: {title}) {text}\n"
    return out


def test_search_r1_client_round_trip(server, bm25_engine):
    # exactly what Search-R1's generation.py posts
    payload = {"queries": QUERIES, "topk": 3, "return_scores": True}
    body = httpx.post(f"{server}/retrieve", json=payload).json()
    assert list(body) == ["result"] and len(body["result"]) == len(QUERIES)
    got = [[(item["document"]["id"], item["document"]["contents"]) for item in row] for row in body["result"]]
    assert got == expected(bm25_engine, QUERIES, 3)
    local = bm25_engine.search(QUERIES, 3)
    for row, docs in zip(body["result"], local):
        assert [item["score"] for item in row] == pytest.approx([d.score for d in docs])
    assert '(Title: "Hamlet")' in passages_to_string(body["result"][0])

    plain = httpx.post(f"{server}/retrieve", json={"queries": QUERIES[:2], "topk": 2}).json()["result"]
    assert [[(d["id"], d["contents"]) for d in row] for row in plain] == expected(bm25_engine, QUERIES[:2], 2)
    default_k = httpx.post(f"{server}/retrieve", json={"queries": ["Hamlet"]}).json()["result"]
    assert len(default_k[0]) == 3
    assert httpx.post(f"{server}/retrieve", json={"queries": []}).json() == {"result": []}
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_remote_engine_matches_local_engine(server, bm25_engine):
    remote = RemoteEngine(server, timeout=10)
    queries = QUERIES + ["   ", ""]
    got = remote.search(queries, 4)
    want = bm25_engine.search(queries, 4)
    assert [[(d.id, d.title, d.text) for d in row] for row in got] == [
        [(d.id, d.title, d.text) for d in row] for row in want
    ]
    assert got[0][0].score == pytest.approx(want[0][0].score)
    assert got[-1] == [] and got[-2] == []
    # a batch over the server's 16-query limit is split into several requests
    many = [f"{q} {i}" for i in range(10) for q in QUERIES]
    chunked = RemoteEngine(f"{server}/retrieve", max_queries_per_request=16)
    ids = [[d.id for d in r] for r in chunked.search(many, 2)]
    assert ids == [[d.id for d in r] for r in bm25_engine.search(many, 2)]
    remote.close()
    chunked.close()


def test_concurrent_clients_get_their_own_results(server, bm25_engine, engine):
    words = ["river", "war", "music", "physics", "empire", "painting", "bird", "mountain", "ocean", "language"]
    queries = [f"{a} {b}" for a in words for b in words[:4]]  # 40 distinct queries
    want = {q: expected(bm25_engine, [q], 3)[0] for q in queries}
    calls_before = engine.calls

    def client(q: str):
        r = http.post(f"{server}/retrieve", json={"queries": [q], "topk": 3, "return_scores": False})
        return q, [(d["id"], d["contents"]) for d in r.json()["result"][0]]

    limits = httpx.Limits(max_connections=32)
    with httpx.Client(timeout=30, limits=limits) as http, ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(client, queries * 3))
    assert all(got == want[q] for q, got in results)
    assert engine.calls - calls_before < len(results)  # concurrent requests were merged into batches


@pytest.mark.parametrize(
    "body, status",
    [
        (b"{not json", 400),
        (b"", 400),
        (b'{"topk": 3}', 422),
        (b'{"queries": "just a string"}', 422),
        (b'{"queries": [1, 2]}', 422),
        (b'{"queries": ["a"], "topk": -1}', 422),
        (b'{"queries": ["a"], "topk": 500}', 422),
        (b'{"queries": ["a"], "topk": "lots"}', 422),
        (b'{"queries": ' + str(["q"] * 17).replace("'", '"').encode() + b"}", 413),
        (b'{"queries": ["' + b"x" * 201 + b'"]}', 413),
        (b'{"queries": ["' + b"x " * 15_000 + b'"]}', 413),
    ],
)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, body, status):
    r = httpx.post(f"{server}/retrieve", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["detail"]
    ok = httpx.post(f"{server}/retrieve", json={"queries": ["Hamlet"], "topk": 1})
    assert ok.status_code == 200 and len(ok.json()["result"][0]) == 1


def test_r1_searcher_route_checks_its_requests_like_retrieve(server, bm25_engine):
    ok = httpx.post(f"{server}/queries", json={"queries": ["Hamlet"], "k": 2}).json()
    assert ok["answers"][0] == [f"{d.id}\t{d.title}   {d.text}" for d in bm25_engine.search(["Hamlet"], 2)[0]]
    assert httpx.post(f"{server}/queries", json={"queries": []}).json() == {"queries": [], "answers": []}
    for body, status in ((b"{", 400), (b'{"k": 2}', 422), (b'{"queries": ["a"], "k": 500}', 422),
                         (b'{"queries": ' + str(["q"] * 17).replace("'", '"').encode() + b"}", 413)):
        r = httpx.post(f"{server}/queries", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status and r.json()["detail"]
    with running_server(bm25_engine, api_key="k") as url:
        assert httpx.post(f"{url}/queries", json={"queries": ["Hamlet"]}).status_code == 401


def test_engine_failure_is_a_500_and_remote_engine_retries(server):
    r = httpx.post(f"{server}/retrieve", json={"queries": ["boom"]})
    assert r.status_code == 500 and "out of memory" in r.json()["detail"]
    remote = RemoteEngine(server, retries=2, backoff=0.05)
    start = time.monotonic()
    failed = remote.search(["boom", ""], 3)
    assert time.monotonic() - start >= 0.15  # backed off 0.05 s then 0.1 s
    assert isinstance(failed[0], SearchFailure) and "after 3 attempts" in failed[0].error and failed[1] == []
    assert remote.search(["Hamlet"], 1)[0][0].title == "Hamlet"
    remote.close()


def test_remote_engine_gives_up_on_a_dead_server():
    port = free_port()  # nothing listens here once the socket closes
    remote = RemoteEngine(f"http://127.0.0.1:{port}", retries=1, backoff=0.01, timeout=2)
    result = remote.search(["Hamlet"], 3)
    assert isinstance(result[0], SearchFailure)
    assert "unavailable" in result[0].error and "after 2 attempts" in result[0].error
    # an env over a dead server tells the agent instead of crashing
    env = SearchEnv(remote, [Task("q", "Who wrote Hamlet?", ("Shakespeare",))])
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("<search> Hamlet </search>")
    assert "unavailable" in obs and info["search_errors"][0] and not terminated
    with pytest.raises(ValueError):
        RemoteEngine("file:///etc/passwd")


def test_api_key_is_enforced(bm25_engine):
    with running_server(bm25_engine, api_key="s3cret") as url:
        payload = {"queries": ["Hamlet"], "topk": 1}
        assert httpx.post(f"{url}/retrieve", json=payload).status_code == 401
        wrong = httpx.post(f"{url}/retrieve", json=payload, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        good = httpx.post(f"{url}/retrieve", json=payload, headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert RemoteEngine(url, api_key="s3cret").search(["Hamlet"], 1)[0][0].title == "Hamlet"
        start = time.monotonic()
        with pytest.raises(RemoteEngineError, match="401"):
            RemoteEngine(url, api_key="nope", retries=3, backoff=60.0).search(["Hamlet"], 1)
        assert time.monotonic() - start < 30  # a 4xx is not retried (a retry would first wait 60 s)


def test_vector_env_over_remote_engine_matches_local(server, bm25_engine):
    actions = ["<search> Hamlet author </search>", "<search> capital of France </search>",
               "<answer> Paris </answer>", "<search> largest ocean </search>"]
    local = make_vec("SearchEnvs/WikiBM25-v0", 4, engine=bm25_engine)
    remote_sync = make_vec("SearchEnvs/WikiBM25-v0", 4, engine=RemoteEngine(server))
    remote_async = make_vec("SearchEnvs/WikiBM25-v0", 4, engine=RemoteEngine(server), asynchronous=True,
                            max_in_flight=4, step_timeout=20)
    outs = []
    for vec in (local, remote_sync, remote_async):
        assert isinstance(vec, SearchVectorEnv)
        vec.reset(seed=3)
        outs.append(vec.step(actions)[0])
    assert outs[0] == outs[1] == outs[2]
    assert all('(Title: "' in o for i, o in enumerate(outs[0]) if i != 2)
    remote_sync.close()
    remote_async.close()


@pytest.mark.slow
def test_serve_command_in_a_subprocess(bm25_engine, tmp_path):
    with Server(bm25_engine.directory, api_key="k1") as server:
        assert httpx.post(f"{server.url}/retrieve", json={"queries": ["Hamlet"]}).status_code == 401
        docs = RemoteEngine(server.url, api_key="k1").search(["Hamlet"], 2)[0]
        assert [d.id for d in docs] == [d.id for d in bm25_engine.search(["Hamlet"], 2)[0]]


def test_gym_make_with_a_server_url_searches_through_it(bm25_engine, monkeypatch):
    import gymnasium as gym

    with running_server(bm25_engine, api_key="k3y") as url:
        monkeypatch.setenv("SEARCH_ENVS_API_KEY", "k3y")
        env = gym.make("SearchEnvs/WikiBM25-v0", engine=url)
        env.reset(seed=0)
        obs, *_, info = env.step("<search> Hamlet tragedy Shakespeare </search>")
        assert isinstance(env.unwrapped.engine, RemoteEngine)
        assert '(Title: "Hamlet")' in obs
        assert info["doc_ids"][0] == [d.id for d in bm25_engine.search(["Hamlet tragedy Shakespeare"], 3)[0]]
        env.close()
