"""The policy interface: anything that maps episode histories to text actions.

A history is an env's `episode.transcript`: a list of `(role, text)` pairs with
role "prompt" (always first), "action" (what the policy wrote) or "observation"
(what the env answered). A policy sees a whole batch of histories at once so a
model can generate for many episodes in one call.

`run_episodes` plays episodes with any policy on any search environment and
returns one `EpisodeRecord` per episode: what benchmarks and the CLI report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from search_envs.rewards import answer_in_texts, cover_exact_match, exact_match, f1_score

History = list[tuple[str, str]]
"""One episode so far: `[("prompt", ...), ("action", ...), ("observation", ...), ...]`."""


class Policy:
    """Base class for policies. Subclasses implement `act`.

    `last_tokens`, when a subclass sets it inside `act` (one int per returned
    action), is the number of tokens each action cost to generate; otherwise
    `count_tokens` estimates it (whitespace words by default).
    """

    name: str = "policy"
    last_tokens: list[int] | None = None

    def act(self, batch: list[History]) -> list[str]:
        """Return one text action per history, in order."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget any state kept between calls (called before a run)."""

    def bind(self, env) -> None:
        """Called by `run_episodes` with the `SearchEnv` before playing. Policies that
        write actions in code keep `env.protocol`; the oracle keeps `env.engine`."""

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        """Release models, clients or servers."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def prompt_of(history: History) -> str:
    """The env's prompt (the first item of a history)."""
    if not history or history[0][0] != "prompt":
        raise ValueError("a history must start with the env's ('prompt', text) item")
    return history[0][1]


def continuation_of(history: History) -> str:
    """Everything after the prompt, concatenated: actions and observations as one text."""
    return "".join(text for _, text in history[1:])


_QUESTION_PATTERNS = (
    re.compile(r"Question:\s*(.*?)\s*$", re.DOTALL),  # search_r1, tool_call
    re.compile(r"User:\s*(.*?)\nAssistant:", re.DOTALL),  # r1_searcher
)


def question_of(history: History) -> str:
    """The question, recovered from the prompt of the built-in protocols
    (the whole prompt when no pattern matches, e.g. a custom protocol)."""
    prompt = prompt_of(history)
    for pattern in _QUESTION_PATTERNS:
        match = pattern.search(prompt)
        if match:
            return match.group(1).strip()
    return prompt.strip()


@dataclass
class EpisodeRecord:
    """The outcome of one episode, as benchmarks store it (one JSON line each)."""

    id: str
    question: str
    answers: list[str]
    prediction: str | None
    em: float
    f1: float
    cover_em: float
    searches: int
    turns: int
    tokens: int
    wall_time: float
    reward: float
    format_ok: bool
    truncated: bool
    answer_in_results: bool
    """Some gold answer appeared in the text of a search result the policy saw."""
    source: str = ""
    trajectory: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unwrap_search_env(env: Any):
    """The `SearchEnv` inside a gymnasium wrapper stack."""
    from search_envs.env import SearchEnv

    base = getattr(env, "unwrapped", env)
    if not isinstance(base, SearchEnv):
        raise TypeError(f"expected a SearchEnv (or a wrapper around one), got {type(env).__name__}")
    return base


def clone_search_env(env: Any, tasks: Any = None):
    """A new SearchEnv with the same engine (shared, built lazily), settings and
    tasks (or `tasks`), and its own episode state: a batch slot for playing
    episodes side by side, or the same env on another task set."""
    from search_envs.env import SearchEnv

    base = unwrap_search_env(env)
    return SearchEnv(
        lambda: base.engine,
        base.tasks if tasks is None else tasks,
        protocol=base.protocol,
        reward=base.reward_spec,
        top_k=base.top_k,
        max_turns=base.max_turns,
        max_obs_chars=base.max_obs_chars,
        max_episode_chars=base.max_episode_chars,
        noise_schedule=base.noise_schedule,
        browser=base.browser,
    )


def _first(env: Any):
    from search_envs.vector import SearchVectorEnv

    return env.envs[0] if isinstance(env, SearchVectorEnv) else env


def _vector_env(env: Any, batch_size: int):
    """A `SearchVectorEnv` to play on: `env` itself, or `batch_size` copies of the
    SearchEnv inside `env` (a SearchEnv or a wrapper) sharing its engine."""
    from search_envs.vector import SearchVectorEnv

    if isinstance(env, SearchVectorEnv):
        return env
    base = unwrap_search_env(env)
    return SearchVectorEnv([base] + [clone_search_env(base) for _ in range(max(0, batch_size - 1))])


def episode_plan(num_tasks: int, n: int, seed: int) -> list[int]:
    """Task indices for `n` episodes: a seeded permutation, repeated if n > num_tasks,
    so a run of n <= len(tasks) episodes never plays the same question twice."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < n:
        order.extend(int(i) for i in rng.permutation(num_tasks))
    return order[:n]


def run_episodes(
    policy: Policy | Callable[[list[History]], list[str]],
    env: Any,
    n: int | None = None,
    seed: int = 0,
    *,
    task_ids: Iterable[str] | None = None,
    batch_size: int = 8,
    on_record: Callable[[EpisodeRecord], None] | None = None,
    progress: bool | str = True,
    keep_transcript: bool = False,
) -> list[EpisodeRecord]:
    """Play episodes with `policy` on `env` and return one record per episode.

    env: a `SearchEnv`, a gymnasium wrapper around one (`gym.make(...)`), or a
        `SearchVectorEnv` whose sub-envs are the batch slots. A single env is
        cloned into `batch_size` slots sharing its engine; each step sends the
        queries of all slots to the engine in one batched call.
    n / seed: play `n` tasks chosen by `episode_plan(len(tasks), n, seed)`.
    task_ids: play exactly these tasks instead (e.g. the ones a resumed benchmark
        has not done yet).
    on_record: called as each episode finishes (benchmarks append it to JSONL
        at once, so an interrupted run loses nothing finished).
    keep_transcript: also store the env's (role, text) transcript in `extra["transcript"]`
        (what `search-envs collect` writes for cold-start SFT).
    Records come back in the order of the plan. Wall time per episode is from
    its reset to its end; episodes in one batch overlap.
    """
    if not isinstance(policy, Policy):
        from search_envs.policies.callable import CallablePolicy

        policy = CallablePolicy(policy)
    if task_ids is not None:
        plan = [("task_id", str(t)) for t in task_ids]
    else:
        if n is None or n < 0:
            raise ValueError("give n >= 0 episodes or task_ids")
        plan = [("task_index", i) for i in episode_plan(len(unwrap_search_env(_first(env)).tasks), n, seed)]
    if not plan:
        return []
    vec = _vector_env(env, min(batch_size, len(plan)))
    envs = vec.envs
    vec.reset(seed=seed)  # every slot gets an episode, so idle slots can take a (dummy) step
    policy.reset()
    policy.bind(envs[0])
    records: list[EpisodeRecord | None] = [None] * len(plan)
    bar = tqdm(total=len(plan), desc=progress if isinstance(progress, str) else "episodes", disable=not progress)
    slots: list[_Slot | None] = [None] * len(envs)
    next_item = 0
    try:
        while True:
            for s in range(len(envs)):
                if slots[s] is None and next_item < len(plan):
                    key, value = plan[next_item]
                    mask = np.arange(len(envs)) == s
                    seeds = [seed + next_item if i == s else None for i in range(len(envs))]
                    vec.reset(seed=seeds, options={"reset_mask": mask, key: value})
                    slots[s] = _Slot(next_item, time.perf_counter())
                    next_item += 1
            active = [s for s, slot in enumerate(slots) if slot is not None]
            if not active:
                break
            actions = policy.act([list(envs[s].episode.transcript) for s in active])
            if len(actions) != len(active):
                raise ValueError(f"policy {policy!r} returned {len(actions)} actions for {len(active)} histories")
            costs = policy.last_tokens if policy.last_tokens and len(policy.last_tokens) == len(active) else None
            policy.last_tokens = None
            # Idle sub-envs (plan exhausted) get an empty action; nothing is recorded for them.
            full = [""] * len(envs)
            for s, a in zip(active, actions):
                full[s] = a if isinstance(a, str) else str(a)
            _, rewards, terminated, truncated, _ = vec.step(full)
            for j, s in enumerate(active):
                slot = slots[s]
                slot.tokens += costs[j] if costs else policy.count_tokens(full[s])
                if terminated[s] or truncated[s]:
                    rec = _record(envs[s], slot, float(rewards[s]), bool(truncated[s]), keep_transcript)
                    records[slot.index] = rec
                    slots[s] = None
                    bar.update(1)
                    if on_record is not None:
                        on_record(rec)
    finally:
        bar.close()
    return [r for r in records if r is not None]


@dataclass
class _Slot:
    index: int
    start: float
    tokens: int = 0


def _record(env, slot: _Slot, reward: float, truncated: bool, keep_transcript: bool = False) -> EpisodeRecord:
    ep = env.episode
    task = ep.task
    last = env.protocol.parse(ep.transcript[-1][1]) if ep.transcript and ep.transcript[-1][0] == "action" else None
    prediction = last.answer if (last is not None and last.kind == "answer" and not truncated) else None
    return EpisodeRecord(
        id=task.id,
        question=task.question,
        answers=list(task.answers),
        prediction=prediction,
        em=exact_match(prediction, task.answers),
        f1=f1_score(prediction, task.answers),
        cover_em=cover_exact_match(prediction, task.answers),
        searches=ep.num_searches,
        turns=ep.turns,
        tokens=slot.tokens,
        wall_time=time.perf_counter() - slot.start,
        reward=float(reward),
        format_ok=bool(ep.format_ok),
        truncated=bool(truncated),
        answer_in_results=answer_in_texts(task.answers, ep.shown_texts),
        source=task.source,
        trajectory=env.render_text(),
        extra={"transcript": [[role, text] for role, text in ep.transcript]} if keep_transcript else {},
    )


def summarize(records: Sequence[EpisodeRecord | dict]) -> dict[str, float]:
    """Means over records: the columns of a results table."""
    rows = [r.to_dict() if isinstance(r, EpisodeRecord) else r for r in records]
    n = len(rows)
    if n == 0:
        return {"n": 0}

    def mean(key: str) -> float:
        return float(sum(float(r[key]) for r in rows) / n)

    return {
        "n": n,
        "em": mean("em"),
        "f1": mean("f1"),
        "cover_em": mean("cover_em"),
        "searches": mean("searches"),
        "tokens": mean("tokens"),
        "wall_time": mean("wall_time"),
        "answer_in_results": mean("answer_in_results"),
    }
