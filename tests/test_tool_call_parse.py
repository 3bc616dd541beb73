"""tool_call parsing: any action text, including any valid JSON, gives an Action, never an exception."""

from __future__ import annotations

import json
import random

from search_envs import SearchEnv, Task
from search_envs.protocols import make_protocol
from search_envs.types import Action
from search_envs.vector import SearchVectorEnv

HUGE_INT = "9" * 4301  # one digit over Python's int-string conversion limit
TASKS = [Task("hamlet", "Who wrote Hamlet?", ("Shakespeare",))]


def call(body: str) -> str:
    return f"<tool_call>{body}</tool_call>"


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 10**30, 1e308, -0.0, 3.5])
    if kind == 2:
        return rng.choice(["", " ", "web_search", "browse_webpage", "search", "x" * 500, "\u0000\ud7ff", "https://a.b/"])
    if kind == 3:
        return float("inf") if rng.random() < 0.5 else float("nan")
    if kind == 4:
        return "q" * rng.randrange(3)
    if kind in (5, 6):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["name", "arguments", "query", "query_list", "url_list", "urls", "k"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_valid_json_nobody_expected_gives_an_invalid_action():
    protocol = make_protocol("tool_call")
    for body in (
        f'{{"name": "web_search", "arguments": {{"query": [{HUGE_INT}]}}}}',
        HUGE_INT,
        f'{{"name": {HUGE_INT}}}',
        '{"name": ["web_search"], "arguments": {}}',
        '{"name": {"a": 1}, "arguments": {}}',
        '{"name": "browse_webpage", "arguments": {"url_list": [[[[]]]]}}',
        "[" * 5000 + "]" * 5000,
    ):
        action = protocol.parse(call(body))
        assert isinstance(action, Action)
        assert action.kind in ("invalid", "search", "browse")


def test_thousands_of_random_json_tool_calls_never_raise():
    protocol = make_protocol("tool_call")
    rng = random.Random(0)
    kinds = set()
    for _ in range(3000):
        value = random_json(rng)
        if rng.random() < 0.7:
            value = {"name": rng.choice(["web_search", "browse_webpage", "search", 1]), "arguments": value}
        action = protocol.parse(call(json.dumps(value)))
        assert isinstance(action, Action)
        kinds.add(action.kind)
    assert {"invalid", "search", "browse"} <= kinds


def test_env_and_vector_step_turn_it_into_an_observation(bm25_engine):
    bad = call(f'{{"name": "web_search", "arguments": {{"query": [{HUGE_INT}]}}}}')
    env = SearchEnv(bm25_engine, TASKS, protocol="tool_call")
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(bad)
    assert "not valid JSON" in obs and not terminated and info["action"]["kind"] == "invalid"
    vec = SearchVectorEnv([SearchEnv(bm25_engine, TASKS, protocol="tool_call") for _ in range(2)], bm25_engine)
    vec.reset(seed=0)
    good = call('{"name": "web_search", "arguments": {"query": ["Hamlet"]}}')
    obs, *_ = vec.step([bad, good])
    assert "not valid JSON" in obs[0] and "<tool_response>" in obs[1]
