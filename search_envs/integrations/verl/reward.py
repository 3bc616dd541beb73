"""The env's reward in verl's `compute_score` form, for trainers that do not use the agent loop.

verl's reward managers call `compute_score(data_source, solution_str, ground_truth,
extra_info)` with the decoded response (everything after the prompt: actions and
observations). The episode ended with its last action, the text after the last
observation. The actions are recovered from the text (between the protocol's
observations) and scored as the env scores an episode, with the reward spec of the
row's env (`extra_info["env_kwargs"]`, default Search-R1's protocol and exact match).

The agent loop returns the env's own reward and needs none of this. From text alone,
a search whose engine failed still counts as a search (the env does not count it), and
an action that itself writes an observation tag is split there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from search_envs.datasets import clean_answers
from search_envs.protocols import Protocol, make_protocol
from search_envs.rewards import EpisodeOutcome, make_reward

_MARK = "\x00"


def env_kwargs_of(extra_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The env kwargs stored in a row's extra_info (a JSON string or a dict)."""
    raw = (extra_info or {}).get("env_kwargs") or {}
    kwargs = json.loads(raw) if isinstance(raw, str) else dict(raw)
    if not isinstance(kwargs, dict):
        raise ValueError(f"extra_info['env_kwargs'] must be a JSON object, got {raw!r}")
    return kwargs


def answers_of(ground_truth: Any) -> tuple[str, ...]:
    """Gold answers from a verl ground_truth: {"target": [...]}, a list, or one string."""
    if isinstance(ground_truth, Mapping):
        ground_truth = ground_truth.get("target", ground_truth.get("answers"))
    return clean_answers(ground_truth)


def split_actions(protocol: Protocol, response: str) -> list[str]:
    """The model's actions in a response: the text between observations (search
    results, or the corrective message after an invalid action). A response cut inside
    an observation has no final action."""
    pairs = {tuple(protocol.wrap(_MARK).split(_MARK)), tuple(protocol.error_observation(_MARK).split(_MARK))}
    pairs = [(o, c) for o, c in pairs if o.strip() and c.strip()]
    actions, pos = [], 0
    while True:
        hits = [(response.find(o, pos), o, c) for o, c in pairs if response.find(o, pos) >= 0]
        if not hits:
            actions.append(response[pos:])
            return actions
        start, opening, closing = min(hits)
        actions.append(response[pos:start])
        end = response.find(closing, start + len(opening))
        if end < 0:
            return actions + [""]
        pos = end + len(closing)


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping | None = None,
                  **kwargs: Any) -> dict[str, float]:
    """{"score": the episode reward, one entry per reward component} for one response."""
    env_kwargs = env_kwargs_of(extra_info)
    protocol = make_protocol(env_kwargs.get("protocol", "search_r1"))
    spec = make_reward(env_kwargs.get("reward", "em"))
    actions = [protocol.parse(a) for a in split_actions(protocol, solution_str)]
    prediction = actions[-1].answer if actions[-1].kind == "answer" else None
    searches = sum(a.kind == "search" for a in actions)
    format_ok = all(a.format_ok for a in actions)
    outcome = EpisodeOutcome(prediction, answers_of(ground_truth), format_ok, searches)
    components = spec.components(outcome)
    return {"score": float(sum(components.values())), **{k: float(v) for k, v in components.items()}}
