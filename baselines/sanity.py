"""Sanity-check policies that bracket every real agent: a random-action lower bound
and an oracle-retrieval upper bound."""

from __future__ import annotations

import numpy as np

from .common import Baseline, documents_text, question_of, turns_taken
from search_envs.policies.base import History
from search_envs.protocols import search_r1_question
from search_envs.rewards import answer_in_texts


class RandomPolicy(Baseline):
    """Uniformly random over the env's action kinds, with random content: search a
    random subset of the question's words, or answer with a random span of the
    text seen so far (question and results). A lower bound: a learned policy that
    does not beat it has learned nothing."""

    name = "random"
    uses_lm = False

    def __init__(self, *args, seed: int = 0, search_prob: float = 0.5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.search_prob = search_prob
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, batch: list[History]) -> list[str]:
        actions = []
        for h in batch:
            words = question_of(h).split() or ["?"]
            last_turn = turns_taken(h) >= self.max_turns - 1
            if not last_turn and self.rng.random() < self.search_prob:
                k = int(self.rng.integers(1, len(words) + 1))
                picked = sorted(self.rng.choice(len(words), size=k, replace=False))
                actions.append(self.search(h, " ".join(words[i] for i in picked)))
            else:
                pool = (documents_text(h) or question_of(h)).split() or ["?"]
                start = int(self.rng.integers(len(pool)))
                length = int(self.rng.integers(1, 4))
                actions.append(self.answer(h, " ".join(pool[start : start + length])))
        self.last_tokens = [0] * len(batch)
        return actions


class OracleRetrieval(Baseline):
    """Searches the question verbatim once, then answers with the gold answer if any
    gold answer string occurs in the returned top-k documents, else gives up.

    What it bounds: its EM equals the answer recall@k of the env's engine for
    the question-as-query, so it is the ceiling of every single-retrieval reader
    (the `rag` baseline with a perfect reader). Multi-step agents can beat it by
    reformulating queries; it says nothing about them except how far plain
    retrieval alone gets. It reads gold answers from the env's task set (given by
    `bind`), so it only runs under `run_episodes` or after `bind(env)`.
    """

    name = "oracle"
    uses_lm = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gold: dict[str, tuple[str, ...]] = {}

    def bind(self, env) -> None:
        super().bind(env)
        # keyed by the question as the prompt shows it too (Search-R1's prompt appends "?")
        self.gold = {" ".join(q.split()): t.answers for t in env.tasks for q in (t.question, search_r1_question(t.question))}

    def act(self, batch: list[History]) -> list[str]:
        if not self.gold:
            raise RuntimeError("the oracle needs bind(env) for the gold answers")
        actions = []
        for h in batch:
            question = question_of(h)
            if turns_taken(h) == 0 and self.max_turns > 1:
                actions.append(self.search(h, question))
                continue
            docs = documents_text(h, max_chars=10**7)
            answers = self.gold.get(" ".join(question.split()), ())
            hit = next((a for a in answers if answer_in_texts([a], [docs])), None)
            actions.append(self.answer(h, hit if hit is not None else "no answer retrieved"))
        self.last_tokens = [0] * len(batch)
        return actions
