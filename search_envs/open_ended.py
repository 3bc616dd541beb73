"""Open-ended questions (O²-Searcher): a question whose reference is a list of key findings
rather than a short answer, the task set made offline from the embedded Wikipedia, and
O²-Searcher's reward for them.

The answer is a markdown list, one finding per "- " line. O²-Searcher scores it with
(KnowledgeXLab/O2-Searcher, `o2searcher/rewards/`):
- format: the share of lines that are non-empty bullets, completeness (10 bullets for full
  marks), the TF-IDF diversity of the bullets, minus 3 x the duplicated share, clipped to [0, 1];
- factual F1: findings matched one-to-one to the reference findings (MiniLM cosine >= 0.75,
  Hungarian assignment), F1 of the matches;
- query diversity: how independent the episode's search queries are (MiniLM), weighted by
  their number and shortened for very short queries;
total = 0.5 * (format + F1 + 0.5 * diversity) / 2.5. Closed questions keep the exact match.
The repository has no licence file, so its functions are restated here, quirks included
(docs/papers.md lists them), not vendored.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

import numpy as np

from search_envs.types import Task

OPEN_ENDED = "open_ended"
"""`Task.metadata["type"]` of an open-ended question; its `answers` are the key findings."""

F1_THRESHOLD = 0.75
"""rewards_score.f1_reward_fn sends threshold 0.75 to the scoring server."""


# ----------------------------------------------------------------------------- format
def tfidf_diversity(contents: list[str], similarity_threshold: float = 0.6, top_k: int = 1) -> float:
    """`calculate_diversity_reward`: 1 - s^1.5 (floored at 0) with s = 0.5 * the top-k pairwise TF-IDF
    cosine + 0.3 * twice the share of pairs above 0.6 + 0.2 * the mean pairwise cosine."""
    if len(contents) <= 1:
        return 1.0
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        tfidf = TfidfVectorizer().fit_transform(contents)
    except ValueError:  # nothing but stop words: the reference falls back to a neutral 0.5
        return 0.5
    sim = (tfidf * tfidf.T).toarray()
    np.fill_diagonal(sim, 0)
    upper = sim[np.triu_indices_from(sim, k=1)]
    top = np.mean(np.sort(upper)[-top_k:]) if len(upper) >= top_k else np.max(upper)
    score = 0.5 * top + 0.3 * (2 * np.sum(upper > similarity_threshold) / len(upper)) + 0.2 * np.mean(upper)
    return float(max(0.0, 1 - np.power(score, 1.5)))


def findings_format_reward(answer: str | None) -> float:
    """`calculate_format_reward` of the answer's text (0 for no answer)."""
    if answer is None or not answer.strip() or answer.strip().lower() == "and":
        return 0.0
    lines = [line.strip() for line in answer.split("\n") if line.strip()]
    bullets = [line[2:].strip() for line in lines if line.startswith("- ") and line[2:].strip()]
    errors = len(lines) - len(bullets)
    duplicate = 1 - len(set(bullets)) / max(1, len(bullets))
    reward = (0.5 * (1 - errors / len(lines)) + 0.3 * min(len(bullets) / 10, 1) + 0.5 * tfidf_diversity(bullets)) / 1.3
    return float(max(0.0, min(1.0, reward - 3 * duplicate)))


# ----------------------------------------------------------------------------- factual F1
def extract_findings(answer: str | None) -> list[str]:
    """The generated findings as O²-Searcher's F1 reads them: the answer split at every '-' (so a
    hyphenated word splits a finding too: a quirk kept for fidelity)."""
    if answer is None or not answer.strip() or answer.strip().lower() == "and":
        return []
    return [p.strip() for p in answer.split("-") if p.strip()]


def findings_f1(answer: str | None, reference: list[str], encoder, threshold: float = F1_THRESHOLD) -> float:
    """`FindingSentenceEvaluator.calculate_scores`: cosine similarities of MiniLM embeddings; for a
    reference finding matched (>= threshold) by several generated ones only the best is kept; a
    Hungarian assignment on 1 - similarity; matches >= threshold count; F1 of precision and recall."""
    from scipy.optimize import linear_sum_assignment

    generated = extract_findings(answer)
    if not generated or not reference:
        return 0.0
    gen = encoder.encode(generated, normalize_embeddings=True)
    ref = encoder.encode(list(reference), normalize_embeddings=True)
    sim = np.asarray(gen) @ np.asarray(ref).T
    for j in range(sim.shape[1]):
        col = sim[:, j]
        matches = col >= threshold
        if np.sum(matches) > 1:
            keep = np.zeros_like(matches)
            keep[np.argmax(col)] = True
            sim[:, j] = keep * col
    rows, cols = linear_sum_assignment(1 - sim)
    hits = sum(1 for i, j in zip(rows, cols) if sim[i, j] >= threshold)
    precision, recall = hits / len(generated), hits / len(reference)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------- query diversity
def _quantity_weight(n: int) -> float:
    if n <= 5:
        return 0.5
    if n <= 15:
        return 0.5 + (n - 5) * 0.05
    return 0.9 - (n - 15) * 0.02


def query_diversity(queries: list[str], encoder) -> float:
    """`QueryIndependenceTransformer.calculate_independence`'s overall score: at most 20 queries,
    0 for fewer than 2; 0.5 * 0.2^(n-1) when every pair is > 0.98 similar; else each query's mean
    (1 - cosine) to the others times a weight for the number of queries, rounded to 2 decimals,
    times min(1, max(0.1, tokens / 8)) for a query of fewer than 8 MiniLM tokens, rounded again,
    then the mean, rounded."""
    queries = list(queries)[:20]
    n = len(queries)
    if n < 2:
        return 0.0
    emb = np.asarray(encoder.encode(queries, normalize_embeddings=True))
    sim = emb @ emb.T
    if np.all(sim > 0.98):
        return round(0.5 * (0.2 ** (n - 1)), 2)
    weight = _quantity_weight(n)
    scores: dict[str, float] = {}
    for i, query in enumerate(queries):  # a repeated query keeps its last score, as the dict there does
        scores[query] = round(float(np.mean([1 - sim[i, j] for j in range(n) if j != i])) * weight, 2)
    penalized: dict[str, float] = {}
    for query in queries:
        tokens = len(encoder.tokenizer(query, add_special_tokens=True)["input_ids"])
        factor = 1.0 if tokens >= 8 else (0.1 if tokens <= 0 else max(0.1, tokens / 8))
        penalized[query] = round(scores[query] * factor, 2)
    return round(float(np.mean(list(penalized.values()))), 2)


def o2_searcher_reward(answer: str | None, reference: list[str], queries: list[str], encoder) -> dict[str, float]:
    """The three weighted parts of `o2searcher_reward_fn` (they sum to the reward)."""
    return {
        "findings_format": 0.5 * findings_format_reward(answer) / 2.5,
        "findings_f1": 0.5 * findings_f1(answer, reference, encoder) / 2.5,
        "query_diversity": 0.5 * 0.5 * query_diversity(queries, encoder) / 2.5,
    }


@lru_cache(maxsize=1)
def default_encoder():
    """The embedded MiniLM (all-MiniLM-L6-v2, the model O²-Searcher scores with), on CPU."""
    from search_envs.engines.dense import load_encoder

    return load_encoder(device="cpu")


# ----------------------------------------------------------------------------- the task set
MIN_FINDINGS, MAX_FINDINGS = 3, 8


def open_ended_task(title: str, text: str) -> Task | None:
    """"What are the key facts about <title>?", its reference findings the lead's sentences
    (3 to 8 of 6 to 60 words); None for a shorter article."""
    from search_envs.ramp import split_sentences

    findings = [s for s in split_sentences(text) if 6 <= len(s.split()) <= 60][:MAX_FINDINGS]
    if len(findings) < MIN_FINDINGS:
        return None
    question = (f"What are the key facts about {title}? Answer with a markdown list, one finding per line "
                f"starting with \"- \".")
    from search_envs.ramp import _article_key

    return Task(f"open-{_article_key(title, text)}", question, tuple(findings), source=OPEN_ENDED,
                metadata={"type": OPEN_ENDED, "title": title, "key_findings": findings})


@lru_cache(maxsize=4)
def open_ended_tasks(split: str = "test", seed: int = 0) -> tuple[Task, ...]:
    """Open-ended questions over the embedded Wikipedia (spec 'open_ended:<split>'), split by
    article as RAMP is, in a seeded order."""
    from search_envs.data import embedded_articles
    from search_envs.ramp import SPLITS, article_split

    if split not in SPLITS:
        raise ValueError(f"unknown open-ended split {split!r}; choose from {SPLITS}")
    tasks = [t for a in embedded_articles() if article_split(a.title) == split
             if (t := open_ended_task(a.title, a.text)) is not None]
    random.Random(f"open-ended-order-{seed}").shuffle(tasks)
    return tuple(tasks)


def is_open_ended(metadata: dict[str, Any] | None) -> bool:
    return bool(metadata) and metadata.get("type") == OPEN_ENDED
