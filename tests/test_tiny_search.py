"""End-to-end proof that env + rollout + mask + SFT + GRPO learn to use search: a tiny
model trained from scratch on single-hop SynthWorld (invented facts) answers questions
about held-out entities far above the best policy that never searches, and searches to
do it. A looser, shorter version of benchmarks/tiny_search.py (figures in agents/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from search_envs.agents.tiny_search import SAME_KERNELS_ENV, TinySearchRun

TRAIN = """
import json, sys
from search_envs.agents.tiny_search import TinySearchRun, learn_to_search, pin_cpu_kernels
assert pin_cpu_kernels()
learn_to_search(sys.argv[1], TinySearchRun(**json.loads(sys.argv[2])))
"""


@pytest.mark.slow  # a training run: ~70 s on 2 quiet cores
def test_tiny_model_learns_to_search(tmp_path):
    # The benchmark's world (every city some training answer), a shorter run. In a fresh
    # process with torch's and MKL's kernels capped at AVX2 (SAME_KERNELS_ENV), as the demo
    # runs: this pytest process has run torch's kernels already, and which kernels run decides
    # where a run from scratch ends (held-out EM 1.000 with AVX-512 kernels, 0.729 with AVX2).
    run = {"sft_epochs": 40, "grpo_steps": 2, "eval_every": 1000, "eval_episodes": 48}
    assert set(run) <= set(TinySearchRun.__dataclass_fields__)
    env = {k: v for k, v in os.environ.items() if k not in SAME_KERNELS_ENV}
    subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path), json.dumps(run)], check=True, env=env, timeout=1200)
    curve = json.loads((tmp_path / "curve.json").read_text())
    summary, rows = curve["summary"], curve["rows"]
    untrained, final = summary["untrained"], summary["after_grpo"]
    assert untrained["em"] <= 0.05 and untrained["searches"] < 0.5
    assert final["searches"] >= 0.9  # it searches ...
    # ... and that is what answers. Measured with these kernels: 0.729 (seed 0); over seeds
    # THRESHOLD_NOTE
    assert final["em"] >= max(0.5, summary["never_search_em"] + 0.4)
    assert summary["never_search_em"] <= 0.1
    assert [r["phase"] for r in rows if r["type"] == "eval"][-1] == "grpo"
    assert (tmp_path / "curve.png").stat().st_size > 10_000
