"""The paper-named metrics agree with the papers' own metric code on every generated pair.

Reference code vendored here (only here), unchanged except for being put in functions:

- Search-R1 (https://github.com/PeterGriffinJin/Search-R1, commit a14dc3a4ffc6fe88c1e95038d9738e21ba3f7a06,
  `verl/utils/reward_score/qa_em.py`: `normalize_answer`, `em_check`, `subem_check`,
  `extract_solution`). Apache License 2.0, Copyright 2024 Bytedance Ltd. and/or its affiliates.
- R1-Searcher (https://github.com/RUCAIBox/R1-Searcher, commit 631167cbb3c2464f805730e3e364a690f5b136d4,
  `evaluation/metric_calc_rule.py`: `normalize_answer`, `bool_mapping`, `f1_score`,
  `exact_match_score`, `cover_exact_match_score_1`, `cover_exact_match_score_2`,
  `metric_max_over_ground_truths`). MIT License, Copyright (c) 2024 Huatong Song.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter

import pytest

from search_envs.rewards import (
    METRICS,
    cover_exact_match,
    exact_match,
    f1_score,
    r1_searcher_cover_em,
    r1_searcher_cover_em_2,
    r1_searcher_em,
    r1_searcher_f1,
    search_r1_em,
    search_r1_extract_solution,
    search_r1_subem,
    substring_match,
)


# --- vendored: Search-R1, verl/utils/reward_score/qa_em.py (Apache-2.0) -------------------------
class SearchR1:
    @staticmethod
    def normalize_answer(s):
        def remove_articles(text):
            return re.sub(r"\b(a|an|the)\b", " ", text)

        def white_space_fix(text):
            return " ".join(text.split())

        def remove_punc(text):
            exclude = set(string.punctuation)
            return "".join(ch for ch in text if ch not in exclude)

        def lower(text):
            return text.lower()

        return white_space_fix(remove_articles(remove_punc(lower(s))))

    @staticmethod
    def em_check(prediction, golden_answers):
        if isinstance(golden_answers, str):
            golden_answers = [golden_answers]
        normalized_prediction = SearchR1.normalize_answer(prediction)
        score = 0
        for golden_answer in golden_answers:
            golden_answer = SearchR1.normalize_answer(golden_answer)
            if golden_answer == normalized_prediction:
                score = 1
                break
        return score

    @staticmethod
    def subem_check(prediction, golden_answers):
        if isinstance(golden_answers, str):
            golden_answers = [golden_answers]
        normalized_prediction = SearchR1.normalize_answer(prediction)
        score = 0
        for golden_answer in golden_answers:
            golden_answer = SearchR1.normalize_answer(golden_answer)
            if golden_answer in normalized_prediction:
                score = 1
                break
        return score

    @staticmethod
    def extract_solution(solution_str):
        """Extract the equation from the solution string."""
        answer_pattern = r'<answer>(.*?)</answer>'
        match = re.finditer(answer_pattern, solution_str, re.DOTALL)
        matches = list(match)

        # If there are 0 or exactly 1 matches, return None
        if len(matches) <= 1:
            return None

        # If there are 2 or more matches, return the last one
        return matches[-1].group(1).strip()


# --- vendored: R1-Searcher, evaluation/metric_calc_rule.py (MIT) --------------------------------
class R1Searcher:
    @staticmethod
    def normalize_answer(s):
        def remove_articles(text):
            return re.sub(r"\b(a|an|the)\b", " ", text)

        def white_space_fix(text):
            return " ".join(text.split())

        def remove_punc(text):
            exclude = set(string.punctuation + "".join(["‘", "’", "´", "`"]))
            return "".join(ch if ch not in exclude else " " for ch in text)

        def lower(text):
            return text.lower()

        def replace_underscore(text):
            return text.replace("_", " ")

        return white_space_fix(remove_articles(remove_punc(lower(replace_underscore(s)))))

    @staticmethod
    def bool_mapping(s):
        if s == "True":
            return "yes"
        elif s == "False":
            return "no"
        else:
            return s

    @staticmethod
    def f1_score(prediction, ground_truth):
        normalize_answer, bool_mapping = R1Searcher.normalize_answer, R1Searcher.bool_mapping
        normalized_prediction = normalize_answer(bool_mapping(prediction))
        normalized_ground_truth = normalize_answer(bool_mapping(ground_truth))

        ZERO_METRIC = (0, 0, 0)

        if (
            normalized_prediction in ["yes", "no", "noanswer"]
            and normalized_prediction != normalized_ground_truth
        ):
            return ZERO_METRIC
        if (
            normalized_ground_truth in ["yes", "no", "noanswer"]
            and normalized_prediction != normalized_ground_truth
        ):
            return ZERO_METRIC

        prediction_tokens = normalized_prediction.split()
        ground_truth_tokens = normalized_ground_truth.split()
        common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
        num_same = sum(common.values())
        if num_same == 0:
            return ZERO_METRIC
        precision = 1.0 * num_same / len(prediction_tokens)
        recall = 1.0 * num_same / len(ground_truth_tokens)
        f1 = (2 * precision * recall) / (precision + recall)
        return f1, precision, recall

    @staticmethod
    def exact_match_score(prediction, ground_truth):
        normalize_answer, bool_mapping = R1Searcher.normalize_answer, R1Searcher.bool_mapping
        return normalize_answer(bool_mapping(prediction)) == normalize_answer(
            bool_mapping(ground_truth)
        )

    @staticmethod
    def cover_exact_match_score_1(prediction, ground_truth):
        normalize_answer, bool_mapping = R1Searcher.normalize_answer, R1Searcher.bool_mapping
        pre_list = normalize_answer(bool_mapping(prediction)).split(" ")
        ground_list = normalize_answer(bool_mapping(ground_truth)).split(" ")
        # 不考虑顺序和连续
        return all(ground in pre_list for ground in ground_list)

    @staticmethod
    def cover_exact_match_score_2(prediction, ground_truth):
        normalize_answer, bool_mapping = R1Searcher.normalize_answer, R1Searcher.bool_mapping
        pre_list = normalize_answer(bool_mapping(prediction)).split(" ")
        ground_list = normalize_answer(bool_mapping(ground_truth)).split(" ")

        for i in range(len(pre_list) - len(ground_list) + 1):
            if pre_list[i : i + len(ground_list)] == ground_list:
                return True
        pre_str = " ".join(pre_list)
        ground_str = " ".join(ground_list)
        if ground_str in pre_str:
            return True
        return False

    @staticmethod
    def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
        scores_for_ground_truths = []
        if metric_fn.__name__ == "exact_match_score":
            for ground_truth in ground_truths:
                score = metric_fn(prediction, ground_truth)
                scores_for_ground_truths.append(score)
            return max(scores_for_ground_truths)
        elif metric_fn.__name__ == "f1_score":
            for ground_truth in ground_truths:
                f1, prec, recall = metric_fn(prediction, ground_truth)
                scores_for_ground_truths.append((f1, prec, recall))
            f1, prec, recall = max(scores_for_ground_truths, key=lambda x: x[0])
            return f1, prec, recall
        elif metric_fn.__name__ == "cover_exact_match_score_1":
            for ground_truth in ground_truths:
                score = metric_fn(prediction, ground_truth)
                scores_for_ground_truths.append(score)
            return max(scores_for_ground_truths)
        elif metric_fn.__name__ == "cover_exact_match_score_2":
            for ground_truth in ground_truths:
                score = metric_fn(prediction, ground_truth)
                scores_for_ground_truths.append(score)
            return max(scores_for_ground_truths)


# --- generated (prediction, gold) pairs -----------------------------------------------------------
WORDS = ["Paris", "paris", "the", "The", "a", "A", "an", "An", "yes", "Yes", "no", "No", "noanswer", "True",
         "False", "true", "New_York", "New York", "U.S.", "US", "don't", "don’t", "“Hamlet”", '"Hamlet"',
         "Hamlet", "1931", "1,000", "3.5", "São", "Paulo", "Zürich", "naïve", "co-founder", "co–founder",
         "co—founder", "rock'n'roll", "´quoted´", "`tick`", "Theatre", "anthem", "and", "of", "İstanbul",
         "ß", "_", "-", "–", "—", "...", "(1990)", "[x]", "e.g.", "Mr.", "Dr", "A.B.C.", "a.m.", "\t", ""]
SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", "_", "-", ", ", ""]


def phrase(rng: random.Random, max_words: int = 4) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, max_words))]
    out = words[0]
    for w in words[1:]:
        out += rng.choice(SEPARATORS) + w
    return out


def mutate(rng: random.Random, gold: str) -> str:
    """A prediction near a gold: the usual ways a model's answer differs from it."""
    choice = rng.randrange(8)
    if choice == 0:
        return gold
    if choice == 1:
        return gold.upper() if rng.random() < 0.5 else gold.lower()
    if choice == 2:
        return f"{rng.choice(['the', 'The', 'a', 'An'])} {gold}{rng.choice(['', '.', '!', ' ', '”'])}"
    if choice == 3:
        return f"{phrase(rng, 2)} {gold} {phrase(rng, 2)}"
    if choice == 4:
        return gold.replace(" ", rng.choice(["_", "-", "–", "  ", "\t"]))
    if choice == 5:
        return rng.choice(["yes", "no", "True", "False", "noanswer", "Yes.", "no!", ""])
    if choice == 6:
        return f"“{gold}”" if rng.random() < 0.5 else f"'{gold}'"
    return phrase(rng)


def generated_pairs(n: int = 4000, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        golds = [phrase(rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        if rng.random() < 0.1:
            golds.append(rng.choice(["the", "A", "an", "The  a", "yes", "no", "True", "False", "noanswer", "“”", "_"]))
        pairs.append((mutate(rng, rng.choice(golds)), golds))
    return pairs


PAIRS = generated_pairs()


def test_the_generated_pairs_exercise_the_differences():
    """The pairs hit every quirk: our metrics and the papers' disagree on a good share of them."""
    differ = lambda ours, theirs: sum(ours(p, g) != theirs(p, g) for p, g in PAIRS)  # noqa: E731
    assert len(PAIRS) >= 4000
    assert differ(exact_match, search_r1_em) >= 40
    assert differ(substring_match, search_r1_subem) >= 40
    assert differ(exact_match, r1_searcher_em) >= 40
    assert differ(f1_score, r1_searcher_f1) >= 40
    assert differ(cover_exact_match, r1_searcher_cover_em) >= 40
    assert sum(search_r1_em(p, g) for p, g in PAIRS) >= 400  # and plenty of them match


def test_search_r1_metrics_agree_with_search_r1_on_every_pair():
    for pred, golds in PAIRS:
        assert search_r1_em(pred, golds) == SearchR1.em_check(pred, golds), (pred, golds)
        assert search_r1_subem(pred, golds) == SearchR1.subem_check(pred, golds), (pred, golds)
        assert search_r1_em(pred, golds[0]) == SearchR1.em_check(pred, golds[0])  # a single gold string


def test_r1_searcher_metrics_agree_with_r1_searcher_on_every_pair():
    best = R1Searcher.metric_max_over_ground_truths
    for pred, golds in PAIRS:
        assert r1_searcher_em(pred, golds) == float(best(R1Searcher.exact_match_score, pred, golds)), (pred, golds)
        assert r1_searcher_f1(pred, golds) == pytest.approx(best(R1Searcher.f1_score, pred, golds)[0], abs=0), (pred, golds)
        assert r1_searcher_cover_em(pred, golds) == float(best(R1Searcher.cover_exact_match_score_1, pred, golds)), (pred, golds)
        assert r1_searcher_cover_em_2(pred, golds) == float(best(R1Searcher.cover_exact_match_score_2, pred, golds)), (pred, golds)


def test_search_r1_extract_solution_agrees_on_generated_texts():
    rng = random.Random(3)
    pieces = ["<answer>", "</answer>", " Beijing ", "<think> x </think>", "<search> q </search>", "\n",
              "<information>Doc 1</information>", " a ", "<answer> Paris </answer>", "  "]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    for text in texts:
        assert search_r1_extract_solution(text) == SearchR1.extract_solution(text), text
    assert sum(SearchR1.extract_solution(t) is not None for t in texts) > 500


def test_known_quirks():
    assert search_r1_em("The", ["a"]) == 1.0 and exact_match("The", ["a"]) == 0.0  # article-only gold
    assert search_r1_subem("anything", ["The"]) == 1.0
    assert search_r1_em("“Hamlet”", ["Hamlet"]) == 0.0 and exact_match("“Hamlet”", ["Hamlet"]) == 1.0
    assert r1_searcher_em("True", ["yes"]) == 1.0 and r1_searcher_em("true", ["yes"]) == 0.0
    assert r1_searcher_em("New_York", ["new york"]) == 1.0 and r1_searcher_em("co-founder", ["co founder"]) == 1.0
    assert r1_searcher_f1("no", ["no way"]) == 0.0 and f1_score("no", ["no way"]) > 0
    assert search_r1_extract_solution("<answer> Beijing </answer> then <answer> Paris </answer>") == "Paris"
    assert search_r1_extract_solution("only <answer> Paris </answer>") is None
    for name in ("search_r1_em", "search_r1_subem", "r1_searcher_em", "r1_searcher_f1", "r1_searcher_cover_em"):
        assert METRICS[name](None, ["x"]) == 0.0 and METRICS[name]("x", []) == 0.0
