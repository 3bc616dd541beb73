"""SearchEnv: answer a question by issuing search queries, one text action per step.

The observation after `reset` is the full prompt (the protocol's instructions and
the question); after each `step` it is only the new environment text (search
results in the protocol's tags, or a corrective message), exactly what a trainer
appends to the model's context.

`step` is split into `begin_step` (parse, decide what to search) and `end_step`
(format results, reward) so a vector environment can send the queries of many
episodes to the engine in one batched call.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol as TypingProtocol

import gymnasium as gym
from gymnasium import spaces

from search_envs.curriculum import make_schedule
from search_envs.engines.base import SearchEngine, SearchFailure
from search_envs.protocols import Protocol, make_protocol
from search_envs.rewards import EpisodeOutcome, RewardSpec, make_reward
from search_envs.tasks import TaskSet
from search_envs.types import Action, Document, QueryContext, Task

MAX_TEXT_CHARS = 1_000_000


# Unicode code points that can stand in a Python str that encodes (no UTF-16 surrogates).
_SURROGATES = range(0xD800, 0xE000)
_CODE_POINTS = 0x110000 - len(_SURROGATES)


class TextSpace(spaces.Text):
    """`spaces.Text` that contains any unicode string up to `max_length`.

    Gymnasium's Text space only contains strings over a fixed character set,
    which no natural-language observation respects. `sample()` draws from the
    same set `contains` accepts: a uniform length, then uniform code points over
    all of unicode (surrogates excluded). A `mask`/`probability` over `charset`
    (printable ASCII) still works as in `spaces.Text`, for readable samples.
    """

    def __init__(self, max_length: int = MAX_TEXT_CHARS, seed: int | None = None) -> None:
        super().__init__(max_length=max_length, min_length=0, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        length = int(self.np_random.integers(self.min_length, self.max_length + 1))
        points = self.np_random.integers(0, _CODE_POINTS, size=length)
        points[points >= _SURROGATES.start] += len(_SURROGATES)
        return "".join(map(chr, points.tolist()))

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"


class Browser(TypingProtocol):
    """Opens pages for a browse action (see `search_envs.web`)."""

    def browse(self, urls: Sequence[str], episode: "Episode") -> str: ...


@dataclass
class SearchRequest:
    """The queries one step needs answered, with their contexts."""

    queries: list[str]
    contexts: list[QueryContext]
    k: int
    noise_probability: float = 0.0


@dataclass
class Episode:
    """Mutable state of the current episode. Trainers may read it; only the env writes it."""

    task: Task
    transcript: list[tuple[str, str]] = field(default_factory=list)
    turns: int = 0
    num_searches: int = 0
    queries: list[str] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    result_urls: set[str] = field(default_factory=set)
    shown_texts: set[str] = field(default_factory=set)
    format_ok: bool = True
    chars: int = 0
    done: bool = False


class SearchEnv(gym.Env[str, str]):
    """A question-answering episode with a search engine as the tool.

    Args:
        engine: a `SearchEngine`, or a zero-argument factory called on first use
            (so `gym.make` stays cheap until the env is reset).
        tasks: the questions, a TaskSet / list of Tasks or a spec for
            `search_envs.datasets.load_tasks` ("ramp", a file, "flashrag:nq");
            `reset` draws one with the env's seeded RNG.
        protocol: action format, a `Protocol` or a name in `PROTOCOLS`.
        reward: a `RewardSpec` or a preset name in `REWARD_PRESETS`.
        top_k: documents returned per query.
        max_turns: steps allowed before the episode is truncated.
        max_obs_chars: each search observation's results are cut to this length.
        max_episode_chars: the whole transcript (prompt, actions, observations)
            may not exceed this; the step that crosses it truncates the episode.
        noise_schedule: optional ZeroSearch curriculum: a callable mapping
            training progress to the probability that a search returns noisy
            documents, or a spec for `search_envs.curriculum.make_schedule`
            ("exponential", {"name": "linear", "total_steps": 500}, 0.3).
        browser: optional page reader for browse actions (`search_envs.web`).
    """

    metadata = {"render_modes": ["ansi", "human"]}
    # constructor argument -> the attribute that holds it: what `sibling` copies
    SETTINGS = {
        "protocol": "protocol",
        "reward": "reward_spec",
        "top_k": "top_k",
        "max_turns": "max_turns",
        "max_obs_chars": "max_obs_chars",
        "max_episode_chars": "max_episode_chars",
        "noise_schedule": "noise_schedule",
        "browser": "browser",
        "render_mode": "render_mode",
    }

    def __init__(
        self,
        engine: SearchEngine | Callable[[], SearchEngine],
        tasks: TaskSet | Sequence[Task] | str | os.PathLike,
        protocol: str | Protocol = "search_r1",
        reward: str | RewardSpec = "em",
        top_k: int = 3,
        max_turns: int = 4,
        max_obs_chars: int = 6000,
        max_episode_chars: int = 64000,
        noise_schedule: Callable[[float], float] | str | dict | float | None = None,
        browser: Browser | None = None,
        render_mode: str | None = None,
    ) -> None:
        if top_k < 1 or max_turns < 1:
            raise ValueError("top_k and max_turns must be >= 1")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self._engine_or_factory = engine
        self._owns_engine = True
        if isinstance(tasks, (str, os.PathLike)):
            from search_envs.datasets import load_tasks

            tasks = load_tasks(tasks)
        self.tasks = tasks if isinstance(tasks, TaskSet) else TaskSet(tasks)
        self.protocol = make_protocol(protocol)
        self.reward_spec = make_reward(reward)
        self.top_k = top_k
        self.max_turns = max_turns
        self.max_obs_chars = max_obs_chars
        self.max_episode_chars = max_episode_chars
        self.noise_schedule = make_schedule(noise_schedule)
        self.browser = browser
        self.render_mode = render_mode
        self.observation_space = TextSpace()
        self.action_space = TextSpace()
        self.episode: Episode | None = None
        self.progress: float | None = None
        self.total_searches = 0
        self._pending: Action | None = None
        self._pending_request: SearchRequest | None = None
        self._rendered = 0  # transcript entries already shown in human mode

    # -- engine ---------------------------------------------------------------
    @property
    def engine(self) -> SearchEngine:
        if not isinstance(self._engine_or_factory, SearchEngine):
            self._engine_or_factory = self._engine_or_factory()
        return self._engine_or_factory

    def sibling(self, **overrides: Any) -> "SearchEnv":
        """A new SearchEnv with this one's settings (`SETTINGS`), tasks and engine
        (shared, built lazily, closed only by this env), and its own episode state:
        a batch slot for playing episodes side by side, or the same env on other tasks
        (`sibling(tasks=...)`). `overrides` replace constructor arguments."""
        unknown = set(overrides) - set(self.SETTINGS) - {"tasks"}
        if unknown:
            raise TypeError(f"sibling() got unknown setting(s): {', '.join(sorted(unknown))}")
        settings = {name: getattr(self, attr) for name, attr in self.SETTINGS.items()}
        settings.update(overrides)
        tasks = settings.pop("tasks", self.tasks)
        source = self._engine_or_factory if isinstance(self._engine_or_factory, SearchEngine) else (lambda: self.engine)
        child = SearchEnv(source, tasks, **settings)
        child._owns_engine = False
        return child

    # -- curriculum -------------------------------------------------------------
    def set_progress(self, progress: float) -> None:
        """Training progress for the noise curriculum, in the schedule's units.
        Until a trainer calls this, progress is the env's own count of searches."""
        self.progress = float(progress)

    def noise_probability(self) -> float:
        if self.noise_schedule is None:
            return 0.0
        t = self.progress if self.progress is not None else float(self.total_searches)
        return float(self.noise_schedule(t))

    # -- gymnasium API ----------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "task_id" in options:
            task = self.tasks.by_id(options["task_id"])
        elif "task_index" in options:
            task = self.tasks[int(options["task_index"])]
        else:
            task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        self.episode = Episode(task=task)
        prompt = self.protocol.prompt(task.question)
        self._rendered = 0
        self._record("prompt", prompt)
        info = {"task_id": task.id, "question": task.question, "source": task.source, "turn": 0}
        if self.render_mode == "human":
            self._render_new()
        return prompt, info

    def step(self, action: str):
        request = self.begin_step(action)
        results = None
        if request is not None:
            results = self.engine.search(request.queries, request.k, request.contexts)
        return self.end_step(results)

    def begin_step(self, action: str) -> SearchRequest | None:
        """Parse `action`; return the search it needs, or None if it needs none."""
        ep = self._require_episode()
        if not isinstance(action, str):
            action = "" if action is None else str(action)
        ep.turns += 1
        self._record("action", action)
        parsed = self.protocol.parse(action)
        ep.format_ok = ep.format_ok and parsed.format_ok
        self._pending, self._pending_request = parsed, None
        if parsed.kind != "search":
            return None
        noise_p = self.noise_probability()
        contexts = [
            QueryContext(
                question=ep.task.question,
                answers=ep.task.answers,
                noisy=bool(noise_p > 0 and self.np_random.random() < noise_p),
            )
            for _ in parsed.queries
        ]
        self._pending_request = SearchRequest(list(parsed.queries), contexts, self.top_k, noise_p)
        return self._pending_request

    def end_step(self, results: list[list[Document]] | None):
        """Finish the step started by `begin_step` with the engine's results, one list
        per query. A query's list may be a `SearchFailure` (the only way errors come
        in); if every query's is `unanswered`, the search did not happen and the agent
        gets the protocol's error observation (`info["search_error"]`).
        """
        ep = self._require_episode()
        parsed: Action = self._pending
        info: dict[str, Any] = {"action": parsed.to_info(), "turn": ep.turns, "queries": [], "doc_ids": []}
        reward, terminated = 0.0, False

        if parsed.kind == "answer":
            terminated = True
            obs = ""
        elif parsed.kind == "search" and results and all(isinstance(d, SearchFailure) and d.unanswered for d in results):
            error = results[0].error
            info.update(queries=list(parsed.queries), search_error=error)
            obs = self.protocol.error_observation(error)
        elif parsed.kind == "search":
            assert results is not None and len(results) == len(parsed.queries)
            ep.num_searches += 1
            self.total_searches += 1
            ep.queries.extend(parsed.queries)
            ids = [[d.id for d in docs] for docs in results]
            ep.doc_ids.extend(i for row in ids for i in row)
            for docs in results:
                ep.result_urls.update(d.url for d in docs if d.url)
                ep.shown_texts.update(d.text for d in docs)
            # the probability this search was drawn with (progress has moved on since)
            info.update(queries=list(parsed.queries), doc_ids=ids, noise_probability=self._pending_request.noise_probability)
            if any(isinstance(docs, SearchFailure) for docs in results):
                info["search_errors"] = [docs.error if isinstance(docs, SearchFailure) else None for docs in results]
            if self.noise_schedule is not None:
                info["noisy"] = [c.noisy for c in self._pending_request.contexts]
            obs = self.protocol.observation(parsed.queries, [self._clip_docs(d) for d in results])
        elif parsed.kind == "browse":
            if self.browser is None:
                obs = self.protocol.error_observation("browsing is not available in this environment")
            else:
                obs = self.protocol.wrap(self.browser.browse(parsed.urls, ep)[: self.max_obs_chars])
        else:
            obs = self.protocol.error_observation(parsed.error or "invalid action")

        if obs:
            self._record("observation", obs)
        truncated = not terminated and (ep.turns >= self.max_turns or ep.chars > self.max_episode_chars)
        info["num_searches"] = ep.num_searches
        if terminated or truncated:
            ep.done = True
            whole_episode_check = getattr(self.protocol, "episode_format_ok", None)  # ReSearch's validate_format
            if whole_episode_check is not None:
                ep.format_ok = ep.format_ok and whole_episode_check(
                    "".join(text for role, text in ep.transcript if role != "prompt"))
            prediction = parsed.answer if terminated else None
            outcome = EpisodeOutcome(prediction, ep.task.answers, ep.format_ok, ep.num_searches,
                                     tuple(ep.queries), self.render_text(),
                                     task_type=ep.task.metadata.get("type"))
            components = self.reward_spec.components(outcome)
            reward = float(sum(components.values()))
            info.update(
                prediction=prediction,
                answers=list(ep.task.answers),
                reward_components=components,
                task_id=ep.task.id,
                format_ok=ep.format_ok,
            )
        if self.render_mode == "human":
            self._render_new()
        return obs, reward, terminated, truncated, info

    def render(self) -> str | None:
        """ansi: the whole transcript. human: prints what the transcript gained
        since it last printed (reset and step print on their own)."""
        if self.render_mode == "ansi":
            return self.render_text()
        if self.render_mode == "human":
            self._render_new()
        return None

    def _render_new(self) -> None:
        if self.episode is None:
            return
        new = self.episode.transcript[self._rendered :]
        self._rendered = len(self.episode.transcript)
        if new:
            print("".join(text for _, text in new), flush=True)

    def render_text(self) -> str:
        """The whole transcript so far, as the model sees it."""
        if self.episode is None:
            return ""
        return "".join(text for _, text in self.episode.transcript)

    def close(self) -> None:
        """Close the engine if this env built or was given it (a sibling leaves it to its parent)."""
        if self._owns_engine and isinstance(self._engine_or_factory, SearchEngine):
            self._engine_or_factory.close()

    # -- helpers ------------------------------------------------------------------
    def _require_episode(self) -> Episode:
        if self.episode is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self.episode.done:
            raise gym.error.ResetNeeded("the episode has ended; call reset()")
        return self.episode

    def _record(self, role: str, text: str) -> None:
        assert self.episode is not None
        self.episode.transcript.append((role, text))
        self.episode.chars += len(text)

    def _clip_docs(self, docs: list[Document]) -> list[Document]:
        """Cut result text so one observation stays within `max_obs_chars`."""
        if not docs:
            return docs  # keep the list itself: a failed web search carries its `error`
        budget = max(1, self.max_obs_chars // max(1, len(docs)))
        return [d if len(d.text) <= budget else Document(d.id, d.title, d.text[:budget], d.score, d.url) for d in docs]
