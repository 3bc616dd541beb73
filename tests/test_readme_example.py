"""The README's first episode does what its comments say when run."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_first_episode_example_is_true():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## An episode"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - our own README
    assert scope["terminated"] and scope["reward"] == 1.0
    assert scope["env"].unwrapped.episode.task.question == (  # the comment under reset()
        'Fill in the [mask] in this sentence from the Wikipedia article "Rudolf Diesel": '
        '"Rudolf Christian Karl Diesel was a [mask] inventor and mechanical engineer."')
    assert scope["info"]["answers"] == ["German"] and scope["info"]["reward_components"] == {"em": 1.0}
    assert '<information>Doc 1(Title: "Rudolf Diesel") Rudolf Christian Karl Diesel was a German inventor' in "".join(
        t for role, t in scope["env"].unwrapped.episode.transcript if role == "observation")
    scope["env"].close()


def test_the_make_vec_example_is_true():
    """The block after the table of ids: a configured env, and a vector env sharing one engine."""
    import gymnasium as gym

    from search_envs.vector import SearchVectorEnv

    text = README.read_text(encoding="utf-8")
    section = text[text.index("## An episode"):text.index("## SynthWorld")]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    assert "gym.make_vec(" in code
    scope: dict = {"gym": gym}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - our own README
    env, envs = scope["env"].unwrapped, scope["envs"]
    assert (env.protocol.name, env.top_k) == ("r1_searcher", 5)
    assert isinstance(envs, SearchVectorEnv) and envs.num_envs == 64
    obs, _ = envs.reset(seed=0)
    obs, *_ = envs.step(["<search>Rudolf Diesel</search>"] * 64)
    assert all('(Title: "Rudolf Diesel")' in o for o in obs) and envs.engine_calls == 1  # one batched search
    envs.close()
    scope["env"].close()
