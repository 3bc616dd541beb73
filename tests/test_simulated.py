"""SimulatedEngine (ZeroSearch): prompt, parser, SQLite cache, the transformers
backend with the real SmolLM2, and the OpenAI-compatible HTTP backend against a
real local server (tests/openai_server.py) with injected delays, 500s and
malformed bodies. Generations are kept short: this runs on a shared CPU."""

from __future__ import annotations

import time

import gymnasium as gym
import pytest

from openai_server import running_server
from search_envs.engines.simulated import SimulatedEngine, SimulationCache, parse_documents, simulation_prompt
from search_envs.generation import OpenAIGenerator, TransformersGenerator, VLLMGenerator, make_generator
from search_envs.llm_client import LLMError, OpenAIClient
from search_envs.types import QueryContext, Task

BRIDGE = QueryContext("When did the George Washington Bridge open?", ("1931",), noisy=False)
BRIDGE_QUERY = "George Washington Bridge opening year"


# -- prompt and parser (no model) ------------------------------------------------------------------
def zerosearch_sft_prompt(query, problem, ground_truth, useful):
    """The prompt of ZeroSearch's `search_simulate_sft`, verbatim (Alibaba-NLP/ZeroSearch, commit
    2d4cdca033ee2c11b1fcfc7fc448b902d7cf8bf5, llm_agent/generation.py; Apache License 2.0). Its caller
    passes ground_truth = golden_answers[index][0], the first gold answer, for any topk."""
    if useful:
        prompt = f'''You are the Google search engine.
Given a query, you need to generate five useful documents for the query.

The user is trying to answer the question: "{problem}" whose answer is {ground_truth}.
Each document should contain about 30 words, and these documents should contain useful information.

Query: {query}
Useful Output:
'''
    else:
        prompt = f'''You are the Google search engine.
Given a query, you need to generate five noisy documents for the query.

The user is trying to answer the question: "{problem}" whose answer is {ground_truth}.
Each document should contain about 30 words, and these documents should contain noisy information.

Query: {query}
Noisy Output:
'''
    return prompt


def test_prompt_is_zerosearchs():
    """ZeroSearch's own prompt for every k up to 5 and several gold answers (the first is named)."""
    for mode in ("useful", "noisy"):
        for k in (1, 3, 5):
            for answers in (["William Shakespeare"], ["Shakespeare", "William Shakespeare", "the Bard"]):
                ours = simulation_prompt("hamlet author", mode, k, "Who wrote Hamlet?", answers)
                assert ours == zerosearch_sft_prompt("hamlet author", "Who wrote Hamlet?", answers[0], mode == "useful")
    assert "generate seven useful documents" in simulation_prompt("q", "useful", 7, "Q?", ["a"])


def test_prompt_without_answer_for_evaluation():
    engine = SimulatedEngine(TransformersGenerator(), include_answer=False, cache=False)  # model loads lazily
    [system, user, prefill] = engine.messages(BRIDGE_QUERY, BRIDGE, 3)
    assert system == {"role": "system", "content": ""}
    assert "1931" not in user["content"] and BRIDGE.question not in user["content"]
    assert "generate five useful documents" in user["content"] and f"Query: {BRIDGE_QUERY}" in user["content"]
    assert prefill == {"role": "assistant", "content": "Doc 1:"}
    with pytest.raises(ValueError):
        simulation_prompt("q", "misleading", 5)


@pytest.mark.parametrize(
    "text, k, expected",
    [
        ("Doc 1: Alpha one.\nDoc 2: Beta two.\nDoc 3: Gamma three.", 5, ["Alpha one.", "Beta two.", "Gamma three."]),
        ("Doc 1: A.\nDoc 2: B.\nDoc 3: C.\nDoc 4: D.\nDoc 5: E.\nDoc 6: F.", 5, ["A.", "B.", "C.", "D.", "E."]),
        ("Useful Output:\n1. First doc\n2) Second doc\n[3] Third doc", 3, ["First doc", "Second doc", "Third doc"]),
        ("**Document 1:** Bold one\n**Document 2**: Bold two", 5, ["Bold one", "Bold two"]),
        ("- Document #1 - dash one\n* Result 2. star two", 5, ["dash one", "star two"]),
        ("First paragraph here.\n\nSecond paragraph\nwrapped line.\n\n", 5, ["First paragraph here.", "Second paragraph wrapped line."]),
        ("Only one line without numbers", 5, ["Only one line without numbers"]),
        ("", 5, []),
        ("   \n\n  ", 5, []),
        ("Doc 1:\nDoc 2: ...\nDoc 3: real", 5, ["real"]),
        ("Doc 1: Same text.\nDoc 2: same text!\nDoc 3: Other.", 5, ["Same text.", "Other."]),
        ("Doc 1: Loop. Loop. Loop. Loop. End.", 5, ["Loop. End."]),
        ("Doc 1: 1931\nDoc 2: 1931", 5, ["1931"]),
        ("Doc 1: Fine.\n\nQuestion: trailing chatter\nAnswer: 1931", 5, ["Fine."]),
    ],
)
def test_parse_documents_variants(text, k, expected):
    assert [t for _, t in parse_documents(text, k)] == expected


def test_parse_documents_titles_word_cap_and_bad_input():
    [(title, text)] = parse_documents('Doc 1: (Title: "Bridge") The bridge opened in 1931.', 5)
    assert (title, text) == ("Bridge", "The bridge opened in 1931.")
    [(_, long)] = parse_documents("Doc 1: " + "word " * 500, 5, max_words=30)
    assert len(long.split()) == 30
    assert parse_documents(None, 5) == [] and parse_documents("Doc 1: x", 0) == []  # type: ignore[arg-type]


# -- cache ------------------------------------------------------------------------------------------------
def test_sqlite_cache_persists_and_counts(tmp_path):
    path = tmp_path / "sim.sqlite"
    cache = SimulationCache(path)
    fields = {"query": "q", "mode": "useful", "model": "m", "include_answer": True, "k": 2}
    cache.put_many([("key1", fields, "Doc 1: a", [("", "a"), ("T", "b")])])
    assert cache.get_many(["key1", "key2", "key1"]) == {"key1": [("", "a"), ("T", "b")]}
    assert (cache.hits, cache.misses, len(cache)) == (2, 1, 1)
    cache.close()
    reopened = SimulationCache(path)
    assert reopened.get_many(["key1"]) == {"key1": [("", "a"), ("T", "b")]} and reopened.hits == 1
    reopened.close()


def test_cache_key_covers_query_mode_model_answer_and_k():
    with_answer = SimulatedEngine(TransformersGenerator(), cache=False)
    without = SimulatedEngine(TransformersGenerator(), include_answer=False, cache=False)
    other_model = SimulatedEngine(TransformersGenerator("some/other-model"), cache=False)
    noisy = QueryContext(BRIDGE.question, BRIDGE.answers, noisy=True)
    other_question = QueryContext("A different question?", ("x",), noisy=False)
    base = with_answer.cache_key(BRIDGE_QUERY, BRIDGE, 3)
    variants = [
        with_answer.cache_key("another query", BRIDGE, 3),
        with_answer.cache_key(BRIDGE_QUERY, noisy, 3),
        with_answer.cache_key(BRIDGE_QUERY, BRIDGE, 5),
        with_answer.cache_key(BRIDGE_QUERY, other_question, 3),  # the question is in the prompt
        without.cache_key(BRIDGE_QUERY, BRIDGE, 3),
        other_model.cache_key(BRIDGE_QUERY, BRIDGE, 3),
    ]
    assert base == with_answer.cache_key(BRIDGE_QUERY, BRIDGE, 3)
    assert len({base, *variants}) == len(variants) + 1
    # evaluation mode: the question and answer are not in the prompt, so not in the key
    assert without.cache_key(BRIDGE_QUERY, BRIDGE, 3) == without.cache_key(BRIDGE_QUERY, other_question, 3)


def test_backend_errors_are_clear():
    with pytest.raises(ValueError, match="unknown generator backend"):
        make_generator("gpt-cloud")
    with pytest.raises(ValueError, match="on_error"):
        SimulatedEngine(TransformersGenerator(), on_error="ignore", cache=False)
    with pytest.raises(ValueError, match="http"):
        OpenAIClient("127.0.0.1:8000/v1", "m")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"search-envs\[vllm\]"):
            VLLMGenerator()
    else:  # pragma: no cover - a GPU machine with vLLM
        pytest.skip("vLLM is installed; its backend needs a GPU and is not exercised here")


# -- real SmolLM2: every test below loads it, directly or behind the server (all slow) ----------
@pytest.fixture(scope="module")
def smollm2():
    generator = TransformersGenerator(num_threads=1)  # 1 thread: far faster than 2 on a shared CPU
    generator.load()
    return generator


@pytest.fixture(scope="module")
def server(smollm2):
    with running_server(smollm2) as srv:
        yield srv


@pytest.fixture()
def client(server):
    server.set_faults()
    c = OpenAIClient(server.base_url, server.model_name, timeout=60, retries=2, backoff=0.01)
    yield c
    c.close()
    server.set_faults()


@pytest.mark.slow
def test_transformers_backend_real_smollm2_and_cache(smollm2, tmp_path):
    path = tmp_path / "sim.sqlite"
    engine = SimulatedEngine(smollm2, cache=path, max_new_tokens=48)
    noisy = QueryContext("What is the capital of Australia?", ("Canberra",), noisy=True)
    queries, contexts = [BRIDGE_QUERY, "capital of Australia", "  "], [BRIDGE, noisy, BRIDGE]
    first = engine.search(queries, 3, contexts)
    assert engine.stats["generated"] == 2 and first[2] == []
    assert 1 <= len(first[0]) <= 3
    for docs in first:
        for doc in docs:
            assert doc.text.strip() and len(doc.text.split()) <= engine.max_words and doc.id.startswith("sim-")
    assert all("canberra" not in d.text.lower() for d in first[1])  # leaked answers dropped from noise
    again = engine.search(queries, 3, contexts)
    assert again == first and engine.stats["generated"] == 2 and engine.cache.hits == 2
    engine.close()
    reopened = SimulatedEngine(smollm2, cache=path, max_new_tokens=48)
    assert reopened.search(queries[:1], 3, contexts[:1]) == first[:1] and reopened.stats["generated"] == 0


# -- HTTP backend against the real local server --------------------------------------------------------------------
@pytest.mark.slow
def test_http_client_real_generations(client):
    france, italy = client.complete(["The capital of France is", "The capital of Italy is"], max_tokens=4, temperature=0)
    assert "Paris" in france and "Rome" in italy
    [reply] = client.chat([[{"role": "user", "content": "Say hello."}]], max_tokens=6, temperature=0)
    assert isinstance(reply, str) and reply.strip()


@pytest.mark.slow
def test_http_backend_matches_local_backend(server, smollm2):
    """The server continues the "Doc 1:" prefill exactly as the local backend does."""
    http = SimulatedEngine(OpenAIGenerator(server.base_url, server.model_name), cache=False, max_new_tokens=40)
    local = SimulatedEngine(smollm2, cache=False, max_new_tokens=40)
    [via_http] = http.search([BRIDGE_QUERY], 2, [BRIDGE])
    [direct] = local.search([BRIDGE_QUERY], 2, [BRIDGE])
    assert via_http and [d.text for d in via_http] == [d.text for d in direct]
    http.close()


@pytest.mark.slow
def test_http_500s_are_retried_then_succeed(server, client):
    server.set_faults(fail_first=2)
    [reply] = client.complete(["The capital of France is"], max_tokens=2, temperature=0)
    assert reply.strip() and client.stats["retries"] == 2 and server.stats["failed"] == 2


@pytest.mark.slow
def test_malformed_json_is_retried(server, client):
    server.set_faults(malformed_first=1)
    [reply] = client.complete(["The capital of France is"], max_tokens=2, temperature=0)
    assert reply.strip() and client.stats["retries"] == 1 and server.stats["malformed"] == 1


@pytest.mark.slow
def test_timeout_is_retried_then_succeeds(server):
    server.set_faults(delay_s=60.0, delay_first=1)
    with OpenAIClient(server.base_url, server.model_name, timeout=5.0, retries=1, backoff=0.01) as fast:
        [reply] = fast.complete(["The capital of France is"], max_tokens=1, temperature=0)
        assert reply.strip() and fast.stats["retries"] == 1


@pytest.mark.slow
def test_persistent_failures_give_clear_errors(server):
    server.set_faults(delay_s=2.0)
    with OpenAIClient(server.base_url, server.model_name, timeout=0.3, retries=1, backoff=0.01) as c:
        with pytest.raises(LLMError, match="timed out") as info:
            c.chat([[{"role": "user", "content": "hi"}]], max_tokens=2)
        assert info.value.attempts == 2 and info.value.status is None
        server.set_faults(fail_first=100)
        out = c.chat([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]], return_exceptions=True)
        assert all(isinstance(e, LLMError) and e.status == 500 and "HTTP 500" in str(e) for e in out)
    server.set_faults()
    with OpenAIClient(server.base_url, "no-such-model", retries=3, backoff=0.01) as wrong:
        before = server.stats["requests"]
        with pytest.raises(LLMError, match="HTTP 400") as info:
            wrong.complete(["x"], max_tokens=2)
        assert info.value.status == 400 and server.stats["requests"] == before + 1  # 4xx: no retry


@pytest.mark.slow
def test_concurrency_and_rate_limits(server):
    convs = [[{"role": "user", "content": str(i)}] for i in range(4)]
    for limit in (4, 2):
        server.wait_idle()  # requests abandoned by earlier tests' timeouts
        server.set_faults(delay_s=0.5, fail_first=100)  # no generation needed to count in-flight requests
        with OpenAIClient(server.base_url, server.model_name, max_concurrency=limit, retries=0) as c:
            assert len(c.chat(convs, return_exceptions=True)) == 4
        assert server.stats["max_in_flight"] == limit
    server.set_faults(fail_first=100)
    with OpenAIClient(server.base_url, server.model_name, retries=0, max_requests_per_second=20) as c:
        start = time.monotonic()
        c.chat(convs + convs[:1], return_exceptions=True)
        assert time.monotonic() - start >= 4 / 20 - 0.01  # 5 requests at 20/s span >= 0.2 s
    server.set_faults()


@pytest.mark.slow
def test_engine_failure_is_an_observation_not_a_crash(server, tmp_path):
    from search_envs.env import SearchEnv

    server.set_faults(fail_first=1000)
    generator = OpenAIGenerator(server.base_url, server.model_name, retries=1, timeout=5, backoff=0.01)
    engine = SimulatedEngine(generator, cache=tmp_path / "sim.sqlite", max_new_tokens=24)
    env = SearchEnv(engine, [Task("t1", BRIDGE.question, BRIDGE.answers)], top_k=2)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(f"<search> {BRIDGE_QUERY} </search>")
    assert "Search failed" in obs and "HTTP 500" in obs and not terminated
    assert info["search_errors"][0] and engine.stats["errors"] == 1 and len(engine.cache) == 0  # failures not cached
    raising = SimulatedEngine(generator, cache=False, on_error="raise", max_new_tokens=24)
    with pytest.raises(LLMError):
        raising.search([BRIDGE_QUERY], 2, [BRIDGE])
    server.set_faults()


@pytest.mark.slow
def test_registered_sim_env_over_http(server, tmp_path):
    import search_envs  # noqa: F401  (registers the ids)

    env = gym.make(
        "SearchEnvs/SimSearch-v0",
        generator="openai",
        generator_kwargs={"base_url": server.base_url, "model": server.model_name},
        engine_kwargs={"max_new_tokens": 40},
        cache=tmp_path / "sim.sqlite",
        tasks=[Task("t1", BRIDGE.question, BRIDGE.answers)],
        noise_schedule={"name": "constant", "p": 0.0},
    ).unwrapped
    obs, info = env.reset(seed=0)
    assert env.top_k == 5
    obs, reward, terminated, truncated, info = env.step(f"<search> {BRIDGE_QUERY} </search>")
    assert info["noisy"] == [False] and "<information>" in obs and "Doc 1" in obs
    assert env.engine.stats["generated"] == 1 and len(env.engine.cache) == 1
    env.close()


def test_local_backend_failure_is_observed(tmp_path):
    """A model that cannot load fails the search with a clear message, not a crash."""
    engine = SimulatedEngine(TransformersGenerator(tmp_path / "no-such-model"), cache=False)
    [result] = engine.search([BRIDGE_QUERY], 2, [BRIDGE])
    assert result == [] and "simulated search engine failed" in result.error and engine.stats["errors"] == 1
    raising = SimulatedEngine(TransformersGenerator(tmp_path / "no-such-model"), cache=False, on_error="raise")
    with pytest.raises(Exception, match="no-such-model"):
        raising.search([BRIDGE_QUERY], 2, [BRIDGE])
