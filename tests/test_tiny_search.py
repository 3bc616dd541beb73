"""End-to-end proof that env + rollout + mask + SFT + GRPO learn to use search: a tiny
model trained from scratch on single-hop SynthWorld (invented facts) searches for people it
never saw and, on this pinned run, answers far above the best policy that never searches.
A shorter version of benchmarks/tiny_search.py (figures and spread in agents/README.md)."""

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
import torch
learn_to_search(sys.argv[1], TinySearchRun(**json.loads(sys.argv[2])))
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability()}))
"""


@pytest.mark.slow  # a training run: ~70 s on 2 quiet cores
def test_tiny_model_learns_to_search(tmp_path):
    # The benchmark's world (every city some training answer), a shorter run, in a fresh
    # process with torch's and MKL's kernels capped at AVX2 (SAME_KERNELS_ENV) as the demo
    # runs it: this pytest process has chosen its kernels already, and they decide where a
    # run from scratch ends (this one: held-out EM 0.729 with AVX2 kernels, 1.000 with AVX-512).
    run = {"sft_epochs": 40, "grpo_steps": 2, "eval_every": 1000, "eval_episodes": 48}
    assert set(run) <= set(TinySearchRun.__dataclass_fields__)
    env = {k: v for k, v in os.environ.items() if k not in SAME_KERNELS_ENV}
    done = subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path), json.dumps(run)], check=True, env=env,
                          timeout=1200, stdout=subprocess.PIPE, text=True)
    capability = json.loads(done.stdout.strip().splitlines()[-1])["capability"]
    curve = json.loads((tmp_path / "curve.json").read_text())
    summary, rows = curve["summary"], curve["rows"]
    untrained, final = summary["untrained"], summary["after_grpo"]
    assert untrained["em"] <= 0.05 and untrained["searches"] < 0.5
    # Every seed measured learns the format and to search for people it never saw (5 of 5) ...
    assert final["searches"] >= 0.9 and final["answered"] >= 0.9
    assert summary["never_search_em"] <= 0.1
    assert [r["phase"] for r in rows if r["type"] == "eval"][-1] == "grpo"
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    # ... but reading the answer out of the result is a phase transition that this seed reaches
    # by step 600 and 4 of 5 seeds do not reach by step 900 (agents/README.md): a model from
    # scratch behaves like another seed wherever other kernels run (no AVX2: ARM), so EM is
    # asserted only where this run is the pinned one. Measured there: 0.729.
    if capability != "AVX2":
        pytest.skip(f"held-out EM is pinned for AVX2 kernels; this machine ran {capability}")
    assert final["em"] >= max(0.5, summary["never_search_em"] + 0.4)
