"""Answer rewards with SQuAD-style normalisation, and reward specs that combine them.

Every metric takes a prediction and a list of gold answers and returns a float in
[0, 1], the best over the gold answers. A `RewardSpec` turns a finished episode
into named components (logged separately) whose sum is the reward.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

_PUNCT = set(string.punctuation) | {"‘", "’", "“", "”", "–", "—"}


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and English articles, collapse whitespace (SQuAD)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _normalized(text: str) -> str:
    """normalize_answer, falling back to lower-cased text when that leaves nothing:
    a gold answer 'A' (an article to SQuAD) must not be matched by an empty prediction."""
    return normalize_answer(text) or " ".join(text.lower().split())


def _golds(golds: str | Sequence[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else [g for g in golds if isinstance(g, str)]


def exact_match(prediction: str | None, golds: str | Sequence[str]) -> float:
    if prediction is None:
        return 0.0
    pred = _normalized(prediction)
    return float(bool(pred) and any(pred == _normalized(g) for g in _golds(golds)))


def substring_match(prediction: str | None, golds: str | Sequence[str]) -> float:
    """1 if some normalised gold answer occurs inside the normalised prediction."""
    if prediction is None:
        return 0.0
    pred = _normalized(prediction)
    return float(any((g := _normalized(gold)) and g in pred for gold in _golds(golds)))


def f1_score(prediction: str | None, golds: str | Sequence[str]) -> float:
    """Token-level F1 (SQuAD), best over the gold answers."""
    if prediction is None:
        return 0.0
    pred_tokens = _normalized(prediction).split()
    best = 0.0
    for gold in _golds(golds):
        gold_tokens = _normalized(gold).split()
        common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
        if common == 0:
            continue
        precision, recall = common / len(pred_tokens), common / len(gold_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def cover_exact_match(prediction: str | None, golds: str | Sequence[str]) -> float:
    """1 if every token of some gold answer is in the prediction (R1-Searcher's ACC_R)."""
    if prediction is None:
        return 0.0
    pred_tokens = set(_normalized(prediction).split())
    return float(any((g := _normalized(gold).split()) and set(g) <= pred_tokens for gold in _golds(golds)))


def answer_in_texts(answers: Sequence[str], texts: Iterable[str]) -> bool:
    """True if some gold answer occurs in one of the texts as whole words, after
    the normalisation the metrics use (`_normalized`: SQuAD, so "in" does not match
    inside "Berlin"; an all-article answer such as "The" kept), so a text that
    exactly matches an answer always contains it."""
    golds = [f" {g} " for g in (_normalized(a) for a in answers) if g]
    return any(g in f" {_normalized(t)} " for t in texts for g in golds)


METRICS: dict[str, Callable[[str | None, Sequence[str]], float]] = {
    "em": exact_match,
    "f1": f1_score,
    "cover_em": cover_exact_match,
    "substring": substring_match,
}


@dataclass(frozen=True)
class EpisodeOutcome:
    """What a reward may look at once an episode ends."""

    prediction: str | None
    answers: tuple[str, ...]
    format_ok: bool
    num_searches: int


def format_reward(outcome: EpisodeOutcome) -> float:
    """1 if the episode ended in a well-formed answer and every action was well formed."""
    return float(outcome.format_ok and outcome.prediction is not None)


def retrieval_reward(outcome: EpisodeOutcome) -> float:
    """R1-Searcher stage 1: reward for having invoked retrieval at least once."""
    return float(outcome.num_searches >= 1)


@dataclass(frozen=True)
class RewardSpec:
    """reward = answer_weight * metric + format_weight * format + retrieval_weight * retrieval
    + format_penalty (negative) when the format is wrong. Each term is reported."""

    answer_metric: str | None = "em"
    answer_weight: float = 1.0
    format_weight: float = 0.0
    format_penalty: float = 0.0
    retrieval_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.answer_metric is not None and self.answer_metric not in METRICS:
            raise ValueError(f"unknown answer metric {self.answer_metric!r}; choose from {sorted(METRICS)}")

    def components(self, outcome: EpisodeOutcome) -> dict[str, float]:
        parts: dict[str, float] = {}
        if self.answer_metric is not None:
            parts[self.answer_metric] = self.answer_weight * METRICS[self.answer_metric](
                outcome.prediction, outcome.answers
            )
        well_formed = format_reward(outcome)
        if self.format_weight:
            parts["format"] = self.format_weight * well_formed
        if self.format_penalty and not well_formed:
            parts["format_penalty"] = self.format_penalty
        if self.retrieval_weight:
            parts["retrieval"] = self.retrieval_weight * retrieval_reward(outcome)
        return parts

    def __call__(self, outcome: EpisodeOutcome) -> float:
        return float(sum(self.components(outcome).values()))


REWARD_PRESETS: dict[str, RewardSpec] = {
    "em": RewardSpec("em"),
    "f1": RewardSpec("f1"),
    "cover_em": RewardSpec("cover_em"),
    "substring": RewardSpec("substring"),
    "search_r1": RewardSpec("em"),
    # R1-Searcher stage 1: 0.5 for retrieving, 0.5 for a well-formed answer, no answer reward.
    "r1_searcher_stage1": RewardSpec(None, format_weight=0.5, retrieval_weight=0.5),
    # R1-Searcher stage 2: F1 answer reward, -2 when the format is wrong.
    "r1_searcher_stage2": RewardSpec("f1", format_penalty=-2.0),
}


def make_reward(reward: str | RewardSpec) -> RewardSpec:
    if isinstance(reward, RewardSpec):
        return reward
    try:
        return REWARD_PRESETS[reward]
    except KeyError:
        raise ValueError(f"unknown reward {reward!r}; choose from {sorted(REWARD_PRESETS)}") from None
