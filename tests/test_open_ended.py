"""O²-Searcher's open-ended task type and reward: hand-computed values of its formulas (its code
has no licence file, so it is restated, not vendored), the real MiniLM encoder, the real env."""

from __future__ import annotations

import pytest

from search_envs import SearchEnv, Task
from search_envs.datasets import load_tasks
from search_envs.open_ended import (
    OPEN_ENDED,
    default_encoder,
    extract_findings,
    findings_f1,
    findings_format_reward,
    query_diversity,
    tfidf_diversity,
)
from search_envs.rewards import EpisodeOutcome, make_reward

REFERENCE = ["The Eiffel Tower is in Paris.", "It was completed in 1889.", "Gustave Eiffel's company built it."]


def test_format_reward_hand_computed():
    # 2 bullets of 3 lines: format 2/3, completeness 2/10, diversity 1 (no shared word): (1/3 + 0.06 + 0.5) / 1.3
    assert findings_format_reward("- red apple\n- blue sky\nnot a bullet") == pytest.approx((1 / 3 + 0.06 + 0.5) / 1.3)
    # a duplicated bullet: 3 x 0.5 duplicate share sinks it to 0
    assert findings_format_reward("- red apple\n- red apple") == 0.0
    assert findings_format_reward("- " + "\n- ".join(f"finding number {w}" for w in "abcdefghijkl")) < 1.0
    assert findings_format_reward(None) == findings_format_reward("  ") == findings_format_reward("and") == 0.0
    # the TF-IDF diversity: identical bullets score 0, disjoint ones 1, a single one 1
    assert tfidf_diversity(["red apple", "red apple"]) == 0.0
    assert tfidf_diversity(["red apple", "blue sky"]) == 1.0 and tfidf_diversity(["x"]) == 1.0


def test_findings_split_at_every_hyphen():
    assert extract_findings("- one finding\n- a well-known fact") == ["one finding", "a well", "known fact"]
    assert extract_findings("and") == []


def test_findings_f1_with_the_real_encoder():
    encoder = default_encoder()
    exact = "\n".join(f"- {r}" for r in REFERENCE)
    assert findings_f1(exact, REFERENCE, encoder) == pytest.approx(1.0)
    # two of three, plus one unrelated finding: precision 2/3, recall 2/3
    partial = f"- {REFERENCE[0]}\n- {REFERENCE[1]}\n- Bananas are rich in potassium."
    assert findings_f1(partial, REFERENCE, encoder) == pytest.approx(2 / 3)
    # the same finding twice matches one reference finding once: precision 1/2, recall 1/3
    assert findings_f1(f"- {REFERENCE[0]}\n- {REFERENCE[0]}", REFERENCE, encoder) == pytest.approx(0.4)
    assert findings_f1("- Bananas are rich in potassium.", REFERENCE, encoder) == 0.0
    assert findings_f1(None, REFERENCE, encoder) == 0.0


def test_query_diversity_with_the_real_encoder():
    encoder = default_encoder()
    assert query_diversity(["one query only"], encoder) == 0.0
    # every pair above 0.98 similar: 0.5 * 0.2^(n-1)
    assert query_diversity(["Eiffel Tower height"] * 3, encoder) == round(0.5 * 0.2**2, 2)
    distinct = ["history of the Eiffel Tower construction in Paris", "nutritional value of bananas and potassium",
                "rules of the offside law in association football"]
    # n <= 5: weight 0.5 times the mean 1 - cosine, about 1 for unrelated queries (a little more when
    # a cosine is negative)
    score = query_diversity(distinct, encoder)
    assert 0.4 <= score <= 0.6
    # short queries (under 8 MiniLM tokens) are scaled down
    assert query_diversity(["Eiffel", "bananas", "offside"], encoder) < score


def test_open_ended_task_set():
    tasks = load_tasks("open_ended:test")
    assert 500 < len(tasks) < 1000
    t = tasks[0]
    assert t.metadata["type"] == OPEN_ENDED and 3 <= len(t.answers) <= 8 and t.metadata["title"] in t.question
    train_titles = {x.metadata["title"] for x in load_tasks("open_ended:train")}
    assert not train_titles & {x.metadata["title"] for x in tasks}


def test_reward_open_and_closed_through_the_env(bm25_engine):
    reward = make_reward("o2_searcher")
    assert reward(EpisodeOutcome("Paris", ("Paris",), True, 1)) == 1.0  # a closed question: exact match
    tasks = [Task("eiffel", "What are the key facts about the Eiffel Tower?", tuple(REFERENCE),
                  metadata={"type": OPEN_ENDED}), Task("paris", "What is the capital of France?", ("Paris",))]
    env = SearchEnv(bm25_engine, tasks, reward="o2_searcher", max_turns=4)
    env.reset(seed=0, options={"task_id": "eiffel"})
    env.step("<search> history of the Eiffel Tower construction in Paris </search>")
    env.step("<search> who designed and built the Eiffel Tower company </search>")
    answer = "\n".join(f"- {r}" for r in REFERENCE)
    _, value, terminated, _, info = env.step(f"<answer>\n{answer}\n</answer>")
    parts = info["reward_components"]
    assert terminated and set(parts) == {"findings_format", "findings_f1", "query_diversity"}
    assert parts["findings_f1"] == pytest.approx(0.2)  # F1 1, weighted 0.5 / 2.5
    assert parts["findings_format"] == pytest.approx(0.2 * findings_format_reward(answer))
    assert 0 < parts["query_diversity"] <= 0.05 and value == pytest.approx(sum(parts.values()))
    env.reset(seed=0, options={"task_id": "paris"})
    _, value, *_ = env.step("<answer> Paris </answer>")
    assert value == 1.0
