"""Answer metrics and reward specs against hand-checked values."""

from __future__ import annotations

import pytest

from search_envs import SearchEnv, Task
from search_envs.protocols import make_protocol
from search_envs.rewards import (
    METRICS,
    REWARD_PRESETS,
    EpisodeOutcome,
    RewardSpec,
    answer_in_texts,
    cover_exact_match,
    exact_match,
    f1_score,
    make_reward,
    echoes_environment,
    normalize_answer,
    search_r1_extract_solution,
    substring_match,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Quick, brown FOX!", "quick brown fox"),
        ("An apple a day", "apple day"),
        ("theatre another", "theatre another"),  # articles only as whole words
        ("“Hello” — ‘world’", "hello world"),
        ("Café Ünïcode ÉCOLE", "café ünïcode école"),
        ("1914–1918", "19141918"),
        ("U.S.A.", "usa"),
        ("  \t\n ", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match():
    assert exact_match("the Eiffel Tower.", ["Eiffel Tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("paris", "Paris") == 1.0  # a single gold string
    assert exact_match("Lyon", ["Paris", "lyon", "Nice"]) == 1.0
    assert exact_match("東京", ["東京"]) == 1.0 and exact_match("Zürich", ["zurich"]) == 0.0
    assert exact_match(None, ["Paris"]) == 0.0
    assert exact_match("Paris", []) == 0.0


def test_empty_answers_never_match():
    assert exact_match("", ["Paris"]) == 0.0
    assert exact_match("", [""]) == 0.0
    assert exact_match("the", ["a"]) == 0.0  # both normalise to nothing
    # a gold answer made only of an article is still matched by itself, not by an empty prediction
    assert exact_match("A", ["A"]) == 1.0 and exact_match("", ["A"]) == 0.0
    assert f1_score("", ["Paris"]) == 0.0 and f1_score("Paris", [""]) == 0.0
    assert substring_match("", ["Paris"]) == 0.0 and substring_match("Paris", [""]) == 0.0
    assert cover_exact_match("Paris", [""]) == 0.0 and cover_exact_match("", ["the"]) == 0.0


def test_f1_values():
    assert f1_score("Barack Obama", ["Obama"]) == pytest.approx(2 / 3)  # P 1/2, R 1
    assert f1_score("the cat sat on mat", ["cat on the mat"]) == pytest.approx(6 / 7)  # P 3/4, R 1
    assert f1_score("new new york", ["new york"]) == pytest.approx(0.8)  # counts clip: P 2/3, R 1
    assert f1_score("york", ["new york city"]) == pytest.approx(0.5)  # P 1, R 1/3
    assert f1_score("Obama", ["Barack Obama", "Obama"]) == 1.0  # best over golds
    assert f1_score("Lyon", ["Paris"]) == 0.0 and f1_score(None, ["Paris"]) == 0.0


def test_cover_exact_match():
    assert cover_exact_match("He was Barack Hussein Obama.", ["Barack Obama"]) == 1.0
    assert cover_exact_match("Obama Barack", ["Barack Obama"]) == 1.0  # order does not matter
    assert cover_exact_match("Obama", ["Barack Obama"]) == 0.0
    assert cover_exact_match("Obama", ["Barack Obama", "Obama"]) == 1.0
    assert cover_exact_match(None, ["x"]) == 0.0


def test_substring_match():
    assert substring_match("The answer is Paris, France.", ["paris"]) == 1.0
    assert substring_match("a party", ["art"]) == 1.0  # character substring, as Search-R1's subem
    assert substring_match("Paris", ["Paris, France"]) == 0.0
    assert substring_match(None, ["Paris"]) == 0.0


def test_metrics_stay_in_unit_interval():
    cases = [("x y z", ["x"]), ("", []), ("a b c", ["a b c", "b"]), ("Zürich", ["zürich"])]
    for metric in METRICS.values():
        for prediction, golds in cases:
            assert 0.0 <= metric(prediction, golds) <= 1.0


def outcome(prediction="Paris", answers=("Paris",), format_ok=True, num_searches=1) -> EpisodeOutcome:
    return EpisodeOutcome(prediction, tuple(answers), format_ok, num_searches)


def test_search_r1_preset_is_exact_match_only():
    spec = make_reward("search_r1")
    assert spec.components(outcome()) == {"search_r1_em": 1.0}
    assert spec.components(outcome("Lyon", format_ok=False)) == {"search_r1_em": 0.0}
    assert spec(outcome(num_searches=0)) == 1.0


def test_search_r1_preset_reads_the_answer_as_search_r1_does(bm25_engine):
    """Search-R1's compute_score_em: extract_solution over the whole text (prompt included)."""
    env = SearchEnv(bm25_engine, [Task("q", "Who wrote Hamlet?", ("William Shakespeare",))], reward="search_r1")
    env.reset(seed=0)
    *_, info = env.step("<think>x</think><answer> William Shakespeare </answer>")
    assert info["reward_components"] == {"search_r1_em": 1.0}
    # an episode cut off without an answer: Search-R1's extract_solution still finds the last
    # <answer> block of the text, here inside the corrective message, and scores it
    env = SearchEnv(bm25_engine, [Task("q", "Who wrote Hamlet?", ("and",))], reward="search_r1", max_turns=1)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("I am not sure")
    assert truncated and info["prediction"] is None
    assert search_r1_extract_solution(env.render_text()) is not None


def test_stage1_retrieval_reward_is_not_earned_by_repeating_the_environment(bm25_engine):
    """The degenerate policy GRPO found (agents/README.md): write no block, then repeat the
    env's corrective message, whose '... <search> and </search>' parses as a search."""
    env = SearchEnv(bm25_engine, [Task("q", "Who wrote Hamlet?", ("Shakespeare",))],
                    reward="r1_searcher_stage1", max_turns=3)
    env.reset(seed=0)
    corrective, *_ = env.step("Let me think about it.")
    obs, *_, info = env.step(corrective)
    assert info["action"]["kind"] == "search" and info["num_searches"] == 1  # the hack still searches
    assert info["queries"][0].endswith("between <search> and")
    *_, info = env.step("<answer> Shakespeare </answer>")
    assert info["reward_components"] == {"format": 0.0, "retrieval": 0.0}
    # echoing the prompt's instructions does not count either; a real search does
    for query, earned in (("query", 0.0), ("the final answer", 0.0), ("Hamlet author", 0.5)):
        env.reset(seed=0)
        env.step(f"<search> {query} </search>")
        *_, info = env.step("<answer> Shakespeare </answer>")
        assert info["reward_components"]["retrieval"] == earned, query
    for protocol in ("r1_searcher", "tool_call"):
        p = make_protocol(protocol)
        env = SearchEnv(bm25_engine, [Task("q", "Who wrote Hamlet?", ("Shakespeare",))], protocol=protocol,
                        reward="r1_searcher_stage1", max_turns=3)
        env.reset(seed=0)
        corrective, *_ = env.step("Let me think.")
        _, _, terminated, _, info = env.step(corrective)
        if not terminated:  # r1_searcher's message parses as a search for "keywords"
            *_, info = env.step(p.answer_action("Shakespeare"))
        assert info["reward_components"]["retrieval"] == 0.0, protocol
    assert echoes_environment("and") and echoes_environment("...") and not echoes_environment("Marie Curie")


def test_r1_searcher_stage1_rewards_retrieval_and_format():
    spec = make_reward("r1_searcher_stage1")
    assert spec.components(outcome("wrong")) == {"format": 0.5, "retrieval": 0.5}
    assert spec.components(outcome(num_searches=0)) == {"format": 0.5, "retrieval": 0.0}
    assert spec.components(outcome(format_ok=False)) == {"format": 0.0, "retrieval": 0.5}
    assert spec(outcome(None, num_searches=3)) == 0.5  # no answer: no format reward


def test_r1_searcher_stage2_f1_with_format_penalty():
    spec = make_reward("r1_searcher_stage2")
    assert spec.components(outcome("Barack Obama", ["Obama"])) == {"r1_searcher_f1": pytest.approx(2 / 3)}
    assert spec.components(outcome("Paris", format_ok=False)) == {"r1_searcher_f1": 1.0, "format_penalty": -2.0}
    assert spec.components(outcome("True", ["yes"])) == {"r1_searcher_f1": 1.0}  # R1-Searcher's bool mapping
    assert spec(outcome(None)) == -2.0


def test_custom_spec_and_errors():
    spec = RewardSpec("cover_em", answer_weight=2.0, format_weight=0.25, retrieval_weight=0.1)
    assert spec.components(outcome("It is Paris")) == {"cover_em": 2.0, "format": 0.25, "retrieval": 0.1}
    assert spec(outcome("It is Paris")) == pytest.approx(2.35)
    assert make_reward(spec) is spec
    assert set(REWARD_PRESETS) >= {"em", "f1", "cover_em", "substring", "search_r1", "r1_searcher_stage1", "r1_searcher_stage2"}
    with pytest.raises(ValueError, match="unknown answer metric 'bleu'"):
        RewardSpec("bleu")
    with pytest.raises(ValueError, match="unknown reward 'nope'.*search_r1"):
        make_reward("nope")


def test_answer_in_texts_matches_whole_words_after_normalisation():
    texts = ["The capital of Germany is Berlin.", "Paris, France: the city of light"]
    assert answer_in_texts(["berlin"], texts)
    assert answer_in_texts(["nope", "the City of Light"], texts)
    assert not answer_in_texts(["in"], ["Berlin"])  # not inside a word
    assert not answer_in_texts(["Earth"], ["Earth's orbit"])  # glued to other characters
    assert not answer_in_texts(["", "the"], texts)  # nothing left after normalisation
    assert not answer_in_texts(["Berlin"], [])
