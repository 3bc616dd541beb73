"""answer_in_texts and exact match share one normalisation."""

from __future__ import annotations

import random

from search_envs.rewards import answer_in_texts, exact_match


def test_an_all_article_answer_is_found_where_em_matches():
    assert exact_match("the", ["the"]) == 1.0
    assert answer_in_texts(["the"], ["the"])
    assert answer_in_texts(["A"], ["a"])
    assert not answer_in_texts(["in"], ["Berlin"])  # still whole words


def test_exact_match_implies_the_text_contains_the_answer():
    rng = random.Random(0)
    words = ["the", "a", "an", "The", "A.", "in", "Berlin", "Paris,", "  ", "x", "U.S.", "!", "'s", "Ünïcode", "-"]
    checked = 0
    for _ in range(5000):
        prediction = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 4)))
        gold = prediction if rng.random() < 0.5 else " ".join(rng.choice(words) for _ in range(rng.randrange(1, 3)))
        if exact_match(prediction, [gold]):
            checked += 1
            assert answer_in_texts([gold], [prediction]), (gold, prediction)
    assert checked > 1000
