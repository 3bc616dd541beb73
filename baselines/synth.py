"""Policies that bracket a learner on SynthWorld (search_envs.synthworld): a scripted
teacher that searches the gold path (the demonstrations for cold-start SFT), and the
best policy that never searches (the chance level a learner must beat)."""

from __future__ import annotations

import re
from collections import Counter

from .common import Baseline, documents_text, question_of, turns_taken
from search_envs.policies.base import History
from search_envs.rewards import answer_in_texts


class _TaskLookup(Baseline):
    """Reads the bound env's tasks (by question) for their SynthWorld metadata."""

    uses_lm = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tasks: dict = {}

    def bind(self, env) -> None:
        super().bind(env)
        self.tasks = {" ".join(t.question.split()): t for t in env.tasks}

    def task_of(self, history: History):
        if not self.tasks:
            raise RuntimeError(f"the {self.name} policy needs bind(env) (run it with run_episodes)")
        task = self.tasks.get(" ".join(question_of(history).split()))
        if task is None or "search_path" not in task.metadata:
            raise ValueError(f"the {self.name} policy plays SynthWorld tasks only")
        return task


class SynthTeacher(_TaskLookup):
    """Search-then-answer demonstrations: searches each mention of the task's gold
    search path in turn (the entity named in the question, then each bridge entity),
    then answers with the gold answer if the results showed it, else "unknown".
    It reads the gold path and answer, so it is a teacher, not a competitor."""

    name = "synth_teacher"

    def act(self, batch: list[History]) -> list[str]:
        actions = []
        for h in batch:
            task = self.task_of(h)
            path = task.metadata["search_path"]
            turn = turns_taken(h)
            if turn < len(path) and turn < self.max_turns - 1:
                actions.append(self.search(h, path[turn]))
                continue
            seen = answer_in_texts(task.answers, [documents_text(h, max_chars=10**7)])
            actions.append(self.answer(h, task.answers[0] if seen else "unknown"))
        self.last_tokens = [0] * len(batch)
        return actions


class MajorityAnswer(_TaskLookup):
    """Never searches; answers the most common gold answer of the question's relation
    over the tasks being played (for a comparison, the first of the two names: a coin
    flip). An upper bound on every policy that never searches: the facts are invented,
    so without search nothing beats the answer prior."""

    name = "majority"

    def bind(self, env) -> None:
        super().bind(env)
        counts: dict[str, Counter] = {}
        for t in env.tasks:
            counts.setdefault(t.metadata.get("relation", ""), Counter())[t.answers[0]] += 1
        # ties broken by the answer text, so the policy is the same on any machine
        self.best = {rel: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for rel, c in counts.items()}

    def act(self, batch: list[History]) -> list[str]:
        self.last_tokens = [0] * len(batch)
        actions = []
        for h in batch:
            task = self.task_of(h)
            pair = _PAIR.search(task.question) if task.metadata["kind"] == "comparison" else None
            actions.append(self.answer(h, pair.group(1) if pair else self.best[task.metadata["relation"]]))
        return actions


_PAIR = re.compile(r", (?:the )?(.+?) or (?:the )?(.+?)\?$")
