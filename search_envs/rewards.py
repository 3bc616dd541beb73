"""Answer rewards with SQuAD-style normalisation, and reward specs that combine them.

Every metric takes a prediction and a list of gold answers and returns a float in
[0, 1], the best over the gold answers. A `RewardSpec` turns a finished episode
into named components (logged separately) whose sum is the reward.

Besides our metrics (`em`, `f1`, `cover_em`, `substring`), each paper's metric is here
under its own name, computed exactly as that paper's released code does, quirks included
(tests/test_paper_metrics.py compares them with the vendored originals):
`search_r1_em`, `search_r1_subem` (Search-R1, `verl/utils/reward_score/qa_em.py`: only
ASCII punctuation removed, an article-only gold equals an empty prediction) and
`r1_searcher_em`, `r1_searcher_f1`, `r1_searcher_cover_em`, `r1_searcher_cover_em_2`
(R1-Searcher, `evaluation/metric_calc_rule.py`: punctuation and "_" become spaces,
"True"/"False" are "yes"/"no", F1 is 0 when yes/no/noanswer differ).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

_PUNCT = set(string.punctuation) | {"‘", "’", "“", "”", "–", "—"}


def _squad_normalize(text: str, punctuation: set[str] | frozenset[str], replacement: str = "") -> str:
    text = "".join(replacement if ch in punctuation else ch for ch in text.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and English articles, collapse whitespace (SQuAD)."""
    return _squad_normalize(text, _PUNCT)


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


# -- the papers' own metrics ---------------------------------------------------------------------
_ASCII_PUNCT = frozenset(string.punctuation)
_R1_PUNCT = frozenset(string.punctuation + "‘’´`")


def search_r1_em(prediction: str | None, golds: str | Sequence[str]) -> float:
    """Search-R1's `em_check`: normalised equality, ASCII punctuation only (curly quotes and
    dashes stay), and no guard for golds that normalise to "" (an article-only gold)."""
    if prediction is None:
        return 0.0
    pred = _squad_normalize(prediction, _ASCII_PUNCT)
    return float(any(_squad_normalize(g, _ASCII_PUNCT) == pred for g in _golds(golds)))


def search_r1_subem(prediction: str | None, golds: str | Sequence[str]) -> float:
    """Search-R1's `subem_check`: a normalised gold inside the normalised prediction
    (character substring, so an article-only gold matches anything)."""
    if prediction is None:
        return 0.0
    pred = _squad_normalize(prediction, _ASCII_PUNCT)
    return float(any(_squad_normalize(g, _ASCII_PUNCT) in pred for g in _golds(golds)))


def search_r1_extract_solution(text: str) -> str | None:
    """Search-R1's `extract_solution` over the whole sequence (prompt + response): the last
    <answer> block, or None unless there are at least two (the prompt's example is one)."""
    matches = list(re.finditer(r"<answer>(.*?)</answer>", text, re.DOTALL))
    return matches[-1].group(1).strip() if len(matches) > 1 else None


def _r1_normalize(text: str) -> str:
    """R1-Searcher's `normalize_answer(bool_mapping(text))`."""
    text = {"True": "yes", "False": "no"}.get(text, text)
    return _squad_normalize(text.replace("_", " "), _R1_PUNCT, " ")


def _r1_best(score: Callable[[str, str], float], prediction: str | None, golds: str | Sequence[str]) -> float:
    if prediction is None:
        return 0.0
    pred = _r1_normalize(prediction)
    return max((score(pred, _r1_normalize(g)) for g in _golds(golds)), default=0.0)


def _r1_f1(pred: str, gold: str) -> float:
    if (pred in ("yes", "no", "noanswer") or gold in ("yes", "no", "noanswer")) and pred != gold:
        return 0.0
    pred_tokens, gold_tokens = pred.split(), gold.split()
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def r1_searcher_em(prediction: str | None, golds: str | Sequence[str]) -> float:
    """R1-Searcher's `exact_match_score`, best over the golds."""
    return _r1_best(lambda p, g: float(p == g), prediction, golds)


def r1_searcher_f1(prediction: str | None, golds: str | Sequence[str]) -> float:
    """R1-Searcher's `f1_score` (its stage-2 reward), best over the golds."""
    return _r1_best(_r1_f1, prediction, golds)


def r1_searcher_cover_em(prediction: str | None, golds: str | Sequence[str]) -> float:
    """R1-Searcher's `cover_exact_match_score_1` (ACC_R, its stage-1 answer check): every
    gold token is a prediction token, order ignored."""
    return _r1_best(lambda p, g: float(set(g.split(" ")) <= set(p.split(" "))), prediction, golds)


def r1_searcher_cover_em_2(prediction: str | None, golds: str | Sequence[str]) -> float:
    """R1-Searcher's `cover_exact_match_score_2`: the normalised gold is a substring."""
    return _r1_best(lambda p, g: float(g in p), prediction, golds)


METRICS: dict[str, Callable[[str | None, Sequence[str]], float]] = {
    "em": exact_match,
    "f1": f1_score,
    "cover_em": cover_exact_match,
    "substring": substring_match,
    "search_r1_em": search_r1_em,
    "search_r1_subem": search_r1_subem,
    "r1_searcher_em": r1_searcher_em,
    "r1_searcher_f1": r1_searcher_f1,
    "r1_searcher_cover_em": r1_searcher_cover_em,
    "r1_searcher_cover_em_2": r1_searcher_cover_em_2,
}

PAPER_METRICS: dict[str, tuple[str, ...]] = {
    "search_r1": ("search_r1_em", "search_r1_subem"),
    "r1_searcher": ("r1_searcher_em", "r1_searcher_f1", "r1_searcher_cover_em"),
}
"""The metrics each paper reports, by paper: what `search-envs bench` puts beside ours."""


@dataclass(frozen=True)
class EpisodeOutcome:
    """What a reward may look at once an episode ends."""

    prediction: str | None
    answers: tuple[str, ...]
    format_ok: bool
    num_searches: int
    queries: tuple[str, ...] = ()
    """Every query searched, in order (O²-Searcher scores their diversity)."""
    transcript: str = ""
    """The whole episode as the model saw it (prompt, actions, observations)."""
    task_type: str | None = None
    """`Task.metadata["type"]`: "open_ended" for a question with key findings as its answers."""


def format_reward(outcome: EpisodeOutcome) -> float:
    """1 if the episode ended in a well-formed answer and every action was well formed."""
    return float(outcome.format_ok and outcome.prediction is not None)


def _environment_words() -> frozenset[str]:
    """The words the environment itself writes, normalised: every protocol's instructions
    (with no question) and its corrective messages for the parse errors it reports."""
    from search_envs.protocols import PROTOCOLS

    key = tuple(PROTOCOLS)  # protocols registered later are included on the next call
    if key not in _ENVIRONMENT_WORDS:
        texts = []
        for cls in PROTOCOLS.values():
            protocol = cls()
            texts += [protocol.prompt(""), protocol.error_observation("")]
            for probe in ("", "x", "<answer>", "<search> </search>", "<|begin_of_query|> <|end_of_query|>"):
                error = protocol.parse(probe).error
                if error:
                    texts.append(protocol.error_observation(error))
        _ENVIRONMENT_WORDS[key] = frozenset(w for t in texts for w in normalize_answer(t).split())
    return _ENVIRONMENT_WORDS[key]


_ENVIRONMENT_WORDS: dict[tuple[str, ...], frozenset[str]] = {}


def echoes_environment(query: str) -> bool:
    """True if the query has no word of its own: all its words come from the environment's
    instructions or corrective messages (e.g. "and", from "put the query between <search>
    and </search>"). A real query names something the instructions do not."""
    return set(normalize_answer(query).split()) <= _environment_words()


def retrieval_reward(outcome: EpisodeOutcome) -> float:
    """R1-Searcher stage 1: reward for having invoked retrieval at least once. A search whose
    query only repeats the environment's own text does not count (deliberate, see
    `echoes_environment`: R1-Searcher has no corrective message to repeat; ours was repeated)."""
    if outcome.queries:
        return float(any(not echoes_environment(q) for q in outcome.queries))
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
    extract: str | None = None
    """How the scored answer is read: None = the env's parsed answer; "search_r1" = Search-R1's
    `extract_solution` over the whole transcript (the last <answer> block, None unless the
    transcript holds two, the prompt's example being one)."""

    def __post_init__(self) -> None:
        if self.answer_metric is not None and self.answer_metric not in METRICS:
            raise ValueError(f"unknown answer metric {self.answer_metric!r}; choose from {sorted(METRICS)}")
        if self.extract not in (None, "search_r1"):
            raise ValueError(f"extract must be None or 'search_r1', got {self.extract!r}")

    def components(self, outcome: EpisodeOutcome) -> dict[str, float]:
        parts: dict[str, float] = {}
        if self.answer_metric is not None:
            prediction = outcome.prediction
            if self.extract == "search_r1" and outcome.transcript:
                prediction = search_r1_extract_solution(outcome.transcript)
            parts[self.answer_metric] = self.answer_weight * METRICS[self.answer_metric](prediction, outcome.answers)
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
    # Search-R1's compute_score_em: its EM of its extract_solution over the whole transcript.
    "search_r1": RewardSpec("search_r1_em", extract="search_r1"),
    # R1-Searcher stage 1 as its paper describes it: 0.5 for retrieving, 0.5 for a well-formed
    # answer, no answer reward. (Its released train/reward_server_llama_stage1.py also adds +1 / -1
    # by cover-EM and checks tag counts over the whole text; not reproduced here.)
    "r1_searcher_stage1": RewardSpec(None, format_weight=0.5, retrieval_weight=0.5),
    # R1-Searcher stage 2: its F1 answer reward, -2 when the format is wrong.
    "r1_searcher_stage2": RewardSpec("r1_searcher_f1", format_penalty=-2.0),
}


def make_reward(reward: str | RewardSpec) -> RewardSpec:
    if isinstance(reward, RewardSpec):
        return reward
    try:
        return REWARD_PRESETS[reward]
    except KeyError:
        raise ValueError(f"unknown reward {reward!r}; choose from {sorted(REWARD_PRESETS)}") from None


# ----------------------------------------------------------------------------- ReSearch
def _f1(common: int, n_pred: int, n_gold: int) -> float:
    return 0.0 if common == 0 else 2 * common / (n_pred + n_gold)  # = 2PR / (P + R)


def research_f1(prediction: str | None, golds: str | Sequence[str]) -> float:
    """ReSearch's `get_f1_score`: SQuAD token F1, except that a "yes"/"no"/"noanswer" on either
    side scores only when both sides are equal (the plain F1 would give "yes" half of
    "yes it is"), and no fallback for answers that normalise to nothing."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    special = ("yes", "no", "noanswer")
    scores = [_f1(sum((Counter(pred.split()) & Counter(g.split())).values()), len(pred.split()), len(g.split()))
              for g in (normalize_answer(x) for x in _golds(golds))
              if not ((pred in special or g in special) and pred != g)]
    return max(scores, default=0.0)


METRICS["research_f1"] = research_f1


@dataclass(frozen=True)
class ReSearchReward(RewardSpec):
    """ReSearch's `compute_score`: 0 for a broken format (checked over the whole episode by the
    `research` protocol) or no answer, the F1 when it is positive, else 0.1 for a well-formed
    wrong answer. Components: "research_f1" and "format" (the 0.1)."""

    answer_metric: str | None = "research_f1"
    wrong_answer_score: float = 0.1

    def components(self, outcome: EpisodeOutcome) -> dict[str, float]:
        if not format_reward(outcome):
            return {"research_f1": 0.0}
        f1 = research_f1(outcome.prediction, outcome.answers)
        return {"research_f1": f1, "format": 0.0 if f1 > 0 else self.wrong_answer_score}


REWARD_PRESETS["research"] = ReSearchReward()


# ----------------------------------------------------------------------------- DeepResearcher
def _deepresearcher_tokens(text: str) -> set[str]:
    """DeepResearcher's `preprocess_text` after lower-casing: punctuation becomes spaces (articles stay)."""
    text = text.lower()
    for punct in string.punctuation:
        text = text.replace(punct, " ")
    return set(text.split())


def deepresearcher_f1(prediction: str | None, golds: str | Sequence[str]) -> float:
    """DeepResearcher's F1 (`format_and_f1.compute_score`): over word SETS, not bags, after
    lower-casing and replacing punctuation with spaces; best over the gold answers."""
    if prediction is None:
        return 0.0
    pred = _deepresearcher_tokens(prediction)
    scores = [_f1(len(pred & g), len(pred), len(g)) for g in map(_deepresearcher_tokens, _golds(golds)) if g and pred]
    return max(scores, default=0.0)


METRICS["deepresearcher_f1"] = deepresearcher_f1


@dataclass(frozen=True)
class DeepResearcherReward(RewardSpec):
    """DeepResearcher's reward: -1 for a format violation (unbalanced tool_call/think/answer tags,
    checked by the `deepresearcher` protocols, or no answer at all), else the answer's F1."""

    answer_metric: str | None = "deepresearcher_f1"
    format_penalty: float = -1.0

    def components(self, outcome: EpisodeOutcome) -> dict[str, float]:
        if not format_reward(outcome):
            return {"format_penalty": self.format_penalty}
        return {"deepresearcher_f1": deepresearcher_f1(outcome.prediction, outcome.answers)}


REWARD_PRESETS["deepresearcher"] = DeepResearcherReward()


# ----------------------------------------------------------------------------- R1-Searcher++
R1_SEARCHER_PP_MAX_ANSWER_WORDS = 10


def cover_em_short(prediction: str | None, golds: str | Sequence[str]) -> float:
    """R1-Searcher++'s answer reward (arXiv:2505.17005 §3, RL for Dynamic Knowledge Acquisition):
    1 when the answer covers a gold answer (cover exact match) and has at most 10 words, else 0
    (so listing candidates cannot cover the gold answer). Words are split on whitespace (how the
    paper counts them is not known here; see docs/papers.md)."""
    if prediction is None or len(prediction.split()) > R1_SEARCHER_PP_MAX_ANSWER_WORDS:
        return 0.0
    return cover_exact_match(prediction, golds)


METRICS["cover_em_short"] = cover_em_short


@dataclass(frozen=True)
class R1SearcherPPReward(RewardSpec):
    """R1-Searcher++'s per-episode reward (§3): format (0, or -2 when broken: no <external> or
    <answer> block, badly formed <internal> spans, a <document> the model wrote itself) + answer
    (cover-EM, 0 past 10 words). Its group reward, which needs the whole group, is added by the
    trainer (`--group-reward r1_searcher_pp`, `r1_searcher_pp_group_reward`)."""

    answer_metric: str | None = "cover_em_short"
    format_penalty: float = -2.0


REWARD_PRESETS["r1_searcher_pp"] = R1SearcherPPReward()


def r1_searcher_pp_group_reward(correct: Sequence[bool], searches: Sequence[int], groups: Sequence[object],
                                cap: float = 2.0) -> list[float]:
    """R1-Searcher++'s group reward (§3; eta = `cap` = 2, its training setting): among a question's
    correct rollouts, those with the fewest external searches get min(2 * sigma^2, eta), sigma the
    standard deviation of the correct rollouts' search counts; every other rollout gets 0. Our
    choices where the sources read do not settle it (docs/papers.md): sigma is the population std,
    and ties on the fewest all get the bonus. A group whose correct rollouts all searched equally
    (or has at most one) gets nothing, which is min(2 * 0, eta)."""
    members: dict[object, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out = [0.0] * len(groups)
    for idx in members.values():
        good = [i for i in idx if correct[i]]
        if len(good) < 2:
            continue
        counts = [float(searches[i]) for i in good]
        mean = sum(counts) / len(counts)
        bonus = min(2.0 * sum((c - mean) ** 2 for c in counts) / len(counts), cap)
        fewest = min(counts)
        for i in good:
            if searches[i] == fewest:
                out[i] = bonus
    return out


GROUP_REWARDS: dict[str, Callable[..., list[float]]] = {"r1_searcher_pp": r1_searcher_pp_group_reward}
"""Rewards computed over a question's group of rollouts; the trainer adds them (`group_reward`)."""


# ----------------------------------------------------------------------------- MaskSearch
def token_recall(prediction: str | None, golds: str | Sequence[str]) -> float:
    """The share of a gold answer's normalised tokens found in the prediction, best over the gold
    answers: MaskSearch's rule-based token-level recall for RAMP, partial credit for a multi-mask
    answer ("span 1; span 2") with some spans right. It rewards long answers; pair it with a format
    rule or judge when that matters (the MaskSearch paper discusses this hacking)."""
    if prediction is None:
        return 0.0
    pred = Counter(_normalized(prediction).split())
    best = 0.0
    for gold in _golds(golds):
        gold_tokens = Counter(_normalized(gold).split())
        if gold_tokens:
            best = max(best, sum((pred & gold_tokens).values()) / sum(gold_tokens.values()))
    return best


METRICS["token_recall"] = token_recall
REWARD_PRESETS["token_recall"] = RewardSpec("token_recall")


# ----------------------------------------------------------------------------- O²-Searcher
@dataclass(frozen=True)
class O2SearcherReward(RewardSpec):
    """O²-Searcher: an open-ended question (task type "open_ended", its answers the reference key
    findings) scores 0.5 * (format + findings F1 + 0.5 * query diversity) / 2.5, see
    `search_envs.open_ended`; a closed question keeps the exact match (its `qa_em.py`)."""

    answer_metric: str | None = "em"

    def components(self, outcome: EpisodeOutcome) -> dict[str, float]:
        from search_envs.open_ended import OPEN_ENDED, default_encoder, o2_searcher_reward

        if outcome.task_type != OPEN_ENDED:
            return super().components(outcome)
        return o2_searcher_reward(outcome.prediction, list(outcome.answers), list(outcome.queries), default_encoder())


REWARD_PRESETS["o2_searcher"] = O2SearcherReward()
