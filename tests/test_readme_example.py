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
    assert scope["info"]["answers"] == ["German"] and scope["info"]["reward_components"] == {"em": 1.0}
    assert '<information>Doc 1(Title: "Rudolf Diesel") Rudolf Christian Karl Diesel was a German inventor' in "".join(
        t for role, t in scope["env"].unwrapped.episode.transcript if role == "observation")
    scope["env"].close()
