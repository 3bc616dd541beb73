"""DeepResearcher's protocol and reward against its released code (vendored below), on thousands
of random actions, and through the real env over BM25 on the embedded Wikipedia."""

from __future__ import annotations

import json
import random
import re
import string

import pytest

from search_envs import SearchEnv, Task
from search_envs.protocols import make_protocol, tags_balanced
from search_envs.rewards import EpisodeOutcome, deepresearcher_f1, make_reward


# ---------------------------------------------------------------------------------------------
# Reference code: DeepResearcher (https://github.com/GAIR-NLP/DeepResearcher), Apache License 2.0,
# commit c93be8fd8637c1ac4a438ce730d118afd308f832: verl/utils/reward_score/format_and_f1.py
# (`check_tags_balance`, `preprocess_text`, `compute_score`, comments translated/dropped) and the
# per-response body of `LLMGenerationManager.parse_response` in scrl/llm_agent/generation.py.
def check_tags_balance(solution_str: str) -> bool:
    tags_to_check = ['tool_call', 'think', 'answer']
    for tag in tags_to_check:
        start_tag = f"<{tag}>"
        end_tag = f"</{tag}>"
        start_count = solution_str.count(start_tag)
        end_count = solution_str.count(end_tag)
        if start_count != end_count:
            return False
        last_pos = -1
        while True:
            start_pos = solution_str.find(start_tag, last_pos + 1)
            if start_pos == -1:
                break
            end_pos = solution_str.find(end_tag, start_pos)
            if end_pos == -1:
                return False
            last_pos = end_pos
    return True


def preprocess_text(text: str) -> str:
    for punct in string.punctuation:
        text = text.replace(punct, ' ')
    text = re.sub(r'\s+', ' ', text)
    text = text.strip()
    return text


def compute_score(solution_str, ground_truth, val_type='f1') -> float:
    solution_str = solution_str.lower()
    ground_truth = ground_truth.lower()
    ground_truths = ground_truth.split("<|answer_split|>")
    if not check_tags_balance(solution_str):
        return -1.0
    try:
        answer_match = re.search(r'<answer>(.*?)</answer>', solution_str, re.DOTALL)
        if answer_match:
            answer_content = answer_match.group(1).strip()
            answer_content = preprocess_text(answer_content)
        else:
            return -1.0
    except Exception:
        return -1.0
    max_score = 0.0
    for gt in ground_truths:
        gt = preprocess_text(gt)
        if val_type == 'em':
            if gt == answer_content:
                return 1.0
        else:
            pred_tokens = set(answer_content.split())
            gt_tokens = set(gt.split())
            if not gt_tokens:
                continue
            if not pred_tokens:
                continue
            common_tokens = pred_tokens & gt_tokens
            precision = len(common_tokens) / len(pred_tokens) if pred_tokens else 0
            recall = len(common_tokens) / len(gt_tokens) if gt_tokens else 0
            if precision + recall > 0:
                f1 = 2 * (precision * recall) / (precision + recall)
                max_score = max(max_score, f1)
    return max_score


def parse_one(content: str, think: bool = True):
    if think:
        content = "<think>" + content
    if "<think>" in content and "<answer>" in content:
        if "</think>" not in content or "</answer>" not in content:
            return (True, "", "")
        else:
            think = content.split("<think>")[1].split("</think>")[0]
            answer = content.split("<answer>")[1].split("</answer>")[0]
            return (True, think, answer)
    elif "<think>" in content and "<tool_call>" in content:
        if "</tool_call>" not in content or "</think>" not in content:
            return (True, "", "")
        else:
            think = content.split("<think>")[1].split("</think>")[0]
            tool_call = content.split("<tool_call>")[1].split("</tool_call>")[0]
            try:
                tool_call = json.loads(tool_call)
                assert "name" in tool_call, "no vliad function name in tool_call"
                assert "arguments" in tool_call, "no valid arguments in tool_call"
                assert tool_call["name"] in ["web_search", "browse_webpage"], "invalid tool name"
                if tool_call["name"] == "web_search":
                    assert "query" in tool_call["arguments"], "no valid query in tool_call"
                    assert isinstance(tool_call["arguments"]["query"], list), "query should be a list"
                elif tool_call["name"] == "browse_webpage":
                    assert "url_list" in tool_call["arguments"], "no valid url_list in tool_call"
                    assert isinstance(tool_call["arguments"]["url_list"], list), "url_list should be a list"
                    assert len(tool_call["arguments"]["url_list"]) >= 1, "url_list number must be greater than 0"
                return (False, think, tool_call)
            except Exception:
                return (True, "", "")
    else:
        return (True, "", "")


# ---------------------------------------------------------------------------------------------
TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<tool_call>", "</tool_call>", " Paris ", " x. ", "The "]
CALLS = ['{"name": "web_search", "arguments": {"query": ["capital of France", "Paris"]}}',
         '{"name": "browse_webpage", "arguments": {"url_list": ["https://a.org/x"]}}',
         '{"name": "web_search", "arguments": {"query": "not a list"}}',
         '{"name": "browse_webpage", "arguments": {"url_list": []}}',
         '{"name": "other", "arguments": {}}', '{"name": "web_search"}', "not json", "[1, 2]"]


def random_action(rng: random.Random) -> str:
    parts = [rng.choice(TAGS) for _ in range(rng.randint(0, 6))]
    if rng.random() < 0.5:
        parts.insert(rng.randint(0, len(parts)), f"</think>\n<tool_call>\n{rng.choice(CALLS)}\n</tool_call>")
    return "".join(parts)


def test_tags_balanced_matches_check_tags_balance():
    rng = random.Random(0)
    for _ in range(5000):
        text = "".join(rng.choice(TAGS) for _ in range(rng.randint(0, 10)))
        assert tags_balanced(text) == check_tags_balance(text), text


def test_f1_matches_compute_score():
    rng = random.Random(1)
    words = ["The", "Paris", "paris,", "city", "of", "a", "light", "U.S.", "u s", "x-y"]
    assert deepresearcher_f1("Paris Paris", ["paris"]) == 1.0  # word sets: repetition is free
    for _ in range(5000):
        pred = " ".join(rng.choice(words) for _ in range(rng.randint(0, 4)))
        golds = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 3))) for _ in range(rng.randint(1, 3))]
        expected = compute_score(f"<think>t</think><answer>{pred}</answer>", "<|answer_split|>".join(golds))
        assert deepresearcher_f1(pred, golds) == pytest.approx(expected), (pred, golds)


def test_parse_matches_parse_response():
    proto = make_protocol("deepresearcher_web")
    rng = random.Random(2)
    kinds = set()
    for _ in range(5000):
        action = random_action(rng)
        stop, _, payload = parse_one(action)
        ours = proto.parse(action)
        kinds.add(ours.kind if ours.answer is not None or ours.kind != "answer" else "ended")
        if stop and payload == "":
            # an unparseable turn ends the rollout without an answer (an empty <answer></answer> reads the same)
            assert ours.kind == "answer" and not ours.answer, action
        elif stop:
            assert (ours.kind, ours.answer) == ("answer", payload.strip()), action
            # the reward then checks the tags over the turn
            assert ours.format_ok == check_tags_balance(("<think>" + action).lower())
        elif payload["name"] == "web_search":
            queries = [q for q in payload["arguments"]["query"][:3] if isinstance(q, str)]
            assert (ours.kind, ours.queries) == ("search", queries), action
        else:
            assert (ours.kind, ours.urls) == ("browse", payload["arguments"]["url_list"]), action
    assert kinds == {"answer", "ended", "search", "browse"}
    # only the first 3 queries run (handler.py)
    call = {"name": "web_search", "arguments": {"query": ["a", "b", "c", "d"]}}
    assert proto.parse(f"t </think><tool_call>{json.dumps(call)}</tool_call>").queries == ["a", "b", "c"]
    # the Wikipedia variant offers web_search only
    browse = '</think><tool_call>{"name": "browse_webpage", "arguments": {"url_list": ["https://a.org"]}}</tool_call>'
    assert make_protocol("deepresearcher").parse(browse).answer is None


def test_prompt_has_the_released_system_prompt_and_tools():
    prompt = make_protocol("deepresearcher").prompt("Who wrote Hamlet?")
    assert prompt.startswith("## Background information \n* Today is ")
    assert "* You are Deep AI Research Assistant" in prompt and "one tool to help you" in prompt
    tools = re.search(r"<tools>\n(.*)\n</tools>", prompt, re.DOTALL).group(1).splitlines()
    assert [json.loads(t)["function"]["name"] for t in tools] == ["web_search"]
    assert prompt.endswith("Question: Who wrote Hamlet?\n<think>")
    web = make_protocol("deepresearcher_web").prompt("Q")
    tools = re.search(r"<tools>\n(.*)\n</tools>", web, re.DOTALL).group(1).splitlines()
    assert [json.loads(t)["function"]["name"] for t in tools] == ["web_search", "browse_webpage"]
    assert "from google" in tools[0] and "two tools" in web


def test_reward_preset_values():
    reward = make_reward("deepresearcher")
    assert reward(EpisodeOutcome("Paris", ("paris",), True, 1)) == 1.0
    assert reward(EpisodeOutcome("the city of Paris", ("Paris",), True, 1)) == pytest.approx(0.4)
    assert reward(EpisodeOutcome("Paris", ("Paris",), False, 1)) == -1.0
    assert reward(EpisodeOutcome(None, ("Paris",), True, 1)) == -1.0


TASKS = [Task("paris", "What is the capital of France?", ("Paris",)),
         Task("hamlet", "Who wrote the tragedy Hamlet?", ("William Shakespeare", "Shakespeare"))]


def test_env_reward_equals_compute_score_on_random_episodes(bm25_engine):
    """The env's reward equals DeepResearcher's compute_score of the response it would score: the
    earlier turns re-rendered from their parsed calls (balanced, no answer) and the last turn raw."""
    rng = random.Random(3)
    env = SearchEnv(bm25_engine, TASKS, protocol="deepresearcher", reward="deepresearcher", max_turns=3)
    turns = ['plan </think>\n<tool_call>\n{"name": "web_search", "arguments": {"query": ["capital of France"]}}\n</tool_call>',
             "ok </think>\n<answer>Paris</answer>", "ok </think>\n<answer>William Shakespeare</answer>",
             "ok </think> <think> <answer>Paris</answer>", "ok <answer>Paris</answer>", "nothing here",
             "ok </think>\n<answer>The city of Lyon</answer>"]
    seen = set()
    for episode in range(120):
        env.reset(seed=episode)
        done = False
        while not done:
            action = rng.choice(turns)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        expected = compute_score("<think>" + action, "<|answer_split|>".join(info["answers"])) if terminated else -1.0
        assert reward == pytest.approx(expected), action
        seen.add(round(reward, 2))
    assert {-1.0, 0.0, 1.0} <= seen
    env.reset(seed=0, options={"task_id": "paris"})
    obs, *_ = env.step(turns[0])
    assert obs.startswith("\n<tool_response>\n[{'search_query': 'capital of France', 'web_page_info_list': [{'title':")
    assert obs.endswith("\n</tool_response>\n<think>")
