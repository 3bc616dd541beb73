"""Task sets as verl parquet: one row per question, with what the agent loop needs.

A row is a standard verl RL row (`data_source`, `prompt` as chat messages,
`reward_model.ground_truth`, `extra_info.index`), so verl's dataset, its length
filter and reward functions read it, plus:

- `agent_name`: the agent loop verl runs for the row (`search_envs_agent`);
- `extra_info.env_id` / `extra_info.env_kwargs` (a JSON object, `tasks` included): the env
  the loop builds, identical on every worker of a cluster;
- `extra_info.task_id`: the episode's question (`reset(options={"task_id": ...})`);
- `extra_info.question`: the task's question as given (a prompt may change it: Search-R1's
  adds a "?" to a question without one);
- `id`: the task id, so `load_tasks("train.parquet")` reads the file back: ids, answers and
  the questions exactly.

The prompt column is the env's own prompt, exactly what the loop's episode starts with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from search_envs.integrations.verl import AGENT_NAME
from search_envs.types import Task


def tasks_spec(spec: str) -> str:
    """A task spec every worker resolves the same way: files become absolute paths."""
    path, sep, fragment = str(spec).partition("#")
    if os.path.exists(path):
        return str(Path(path).resolve()) + sep + fragment
    return str(spec)


def verl_rows(tasks: list[Task], env_id: str, env_kwargs: dict[str, Any], split: str,
              agent_name: str = AGENT_NAME) -> list[dict[str, Any]]:
    """verl rows for `tasks`, played on `gym.make(env_id, **env_kwargs)` (which must include `tasks`)."""
    import gymnasium as gym

    import search_envs  # noqa: F401

    protocol = gym.make(env_id, **env_kwargs).unwrapped.protocol
    kwargs_json = json.dumps(env_kwargs, sort_keys=True)
    return [
        {
            "id": task.id,
            "data_source": task.source or "search_envs",
            "agent_name": agent_name,
            "prompt": [{"role": "user", "content": protocol.prompt(task.question)}],
            "ability": "search",
            "reward_model": {"style": "rule", "ground_truth": {"target": list(task.answers)}},
            "extra_info": {
                "index": i,
                "split": split,
                "task_id": task.id,
                "question": task.question,
                "env_id": env_id,
                "env_kwargs": kwargs_json,
            },
        }
        for i, task in enumerate(tasks)
    ]


def export_verl(tasks: str, out_dir: str | os.PathLike, env_id: str = "SearchEnvs/WikiBM25-v0",
                env_kwargs: dict[str, Any] | None = None, test_tasks: str | None = None,
                test_fraction: float = 0.1, seed: int = 0) -> dict[str, Path]:
    """Write `train.parquet` and `test.parquet` into `out_dir`; return their paths.

    The test split is `test_tasks` when given, else a `test_fraction` of `tasks` drawn
    with `seed` (the rest is train). `env_kwargs` (protocol, reward, top_k, max_turns,
    engine URL, noise_schedule, ...) go to every episode's env.
    """
    import pandas as pd

    from search_envs.datasets import load_tasks

    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    env_kwargs = dict(env_kwargs or {})
    if "tasks" in env_kwargs:
        raise ValueError("give the tasks with --tasks / --test-tasks, not in the env kwargs")
    splits: dict[str, tuple[str, list[Task]]] = {}
    train_spec = tasks_spec(tasks)
    train = list(load_tasks(train_spec))
    if test_tasks is not None:
        splits["test"] = (tasks_spec(test_tasks), list(load_tasks(tasks_spec(test_tasks))))
    else:
        order = np.random.default_rng(seed).permutation(len(train))
        n_test = int(round(test_fraction * len(train)))
        splits["test"] = (train_spec, [train[i] for i in sorted(order[:n_test])])
        train = [train[i] for i in sorted(order[n_test:])]
    splits["train"] = (train_spec, train)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "test"):
        spec, split_tasks = splits[split]
        if not split_tasks:
            raise ValueError(f"the {split} split is empty; give more tasks, --test-fraction or --test-tasks")
        rows = verl_rows(split_tasks, env_id, {**env_kwargs, "tasks": spec}, split)
        paths[split] = out / f"{split}.parquet"
        pd.DataFrame(rows).to_parquet(paths[split], index=False)
    return paths
