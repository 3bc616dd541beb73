"""End-to-end proof that env + rollout + mask + SFT + GRPO learn to use search: a tiny
model trained from scratch on single-hop SynthWorld (invented facts) answers questions
about held-out entities far above the best policy that never searches, and searches to
do it. A looser, shorter version of benchmarks/tiny_search.py (figures in agents/README.md)."""

from __future__ import annotations

import json

import pytest

from search_envs.agents.tiny_search import TinySearchRun, learn_to_search


@pytest.mark.slow  # a training run: ~45 s on 2 quiet cores (258 s measured under load average 11)
def test_tiny_model_learns_to_search(tmp_path):
    # the benchmark's world (every city some training answer), a shorter run
    run = TinySearchRun(sft_epochs=40, grpo_steps=2, eval_every=1000, eval_episodes=48)
    summary = learn_to_search(tmp_path, run)
    untrained, final = summary["untrained"], summary["after_grpo"]
    assert untrained["em"] <= 0.05 and untrained["searches"] < 0.5
    assert final["searches"] >= 0.9  # it searches ...
    assert final["em"] >= max(0.8, summary["never_search_em"] + 0.5)  # ... and that is what answers (measured: 1.0)
    assert summary["never_search_em"] <= 0.1
    rows = json.loads((tmp_path / "curve.json").read_text())["rows"]
    assert [r["phase"] for r in rows if r["type"] == "eval"][-1] == "grpo"
    assert (tmp_path / "curve.png").stat().st_size > 10_000
