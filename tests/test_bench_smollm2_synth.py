"""benchmarks/smollm2_synth.py: its options, its stage graph, and one end-to-end run of
every stage (collect -> SFT -> GRPO masked / not masked -> table + PNG) with a tiny
word-level Llama in place of SmolLM2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import smollm2_synth as bench  # noqa: E402


def test_defaults_are_the_full_experiment():
    args = bench.parse_args([])
    assert args.tasks == ["single", "two"] and args.seeds == [0, 1, 2] and args.grpo_seeds == [0, 1, 2]
    assert args.masks == ["mask", "nomask"]
    stages = bench.plan(args)
    # per task: teacher + 3 x (SFT + 2 GRPO)
    assert len(stages) == 2 * (1 + 3 * 3)
    by_name = {s.name: s for s in stages}
    for task in ("single", "two"):
        for seed in (0, 1, 2):
            sft = by_name[f"{task}/seed{seed}/sft"]
            assert sft.needs == [f"{task}/teacher"] and "--seed" in sft.cmd
            for mask in ("mask", "nomask"):
                grpo = by_name[f"{task}/seed{seed}/grpo-{mask}"]
                assert grpo.needs == [sft.name]
                assert grpo.cmd[grpo.cmd.index("--init") + 1] == str(sft.folder)
                assert grpo.cmd[grpo.cmd.index("--reward") + 1] == "em"
                assert ("--no-mask-retrieved-tokens" in grpo.cmd) == (mask == "nomask")
    two = by_name["two/teacher"].cmd
    assert json.loads(two[two.index("--env-kwargs") + 1]) == {"hops": [2]}


def test_shrinking_and_bad_options(capsys):
    args = bench.parse_args(["--tasks", "single", "--seeds", "0", "1", "--grpo-seeds", "0", "--masks", "mask"])
    assert [s.name for s in bench.plan(args)] == ["single/teacher", "single/seed0/sft", "single/seed0/grpo-mask",
                                                 "single/seed1/sft"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--seeds", "0", "--grpo-seeds", "1"])
    assert "subset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--grpo-steps", "0"])
    gpu = bench.parse_args(["--gpu"])
    assert gpu.device == "cuda" and gpu.eval_episodes == 64 and gpu.temperature == 1.0


@pytest.mark.slow
def test_end_to_end_with_a_tiny_model(tmp_path, monkeypatch):
    from search_envs.agents.tiny import tiny_llama, word_tokenizer
    from search_envs.protocols import SearchR1Protocol
    from search_envs.synthworld import WorldConfig, generate_world

    world = generate_world(WorldConfig())
    p = SearchR1Protocol()
    texts = [x["text"] + " " + x["title"] for x in world.passages] + [t.question for t in world.all_tasks]
    tokenizer = word_tokenizer(texts + [p.prompt(""), p.error_observation("x"), 'Doc 1(Title: "") unknown'])
    model_dir = tmp_path / "tiny"
    tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "bench"
    argv = ["--tasks", "single", "--seeds", "0", "--model", str(model_dir), "--out-dir", str(out),
            "--teacher-episodes", "4", "--eval-episodes", "2", "--sft-batch-size", "2", "--grpo-steps", "1",
            "--questions-per-step", "1", "--group-size", "2", "--mini-batch-size", "1", "--max-response-length", "4"]
    assert bench.main(argv) == 0
    table = (out / "results.md").read_text()
    for label in ("untrained", "SFT", "SFT + GRPO (masked)", "SFT + GRPO (not masked)"):
        assert f"| {label} | 1 |" in table
    assert (out / "curves.png").stat().st_size > 0
    for stage in ("teacher", "seed0/sft", "seed0/grpo-mask", "seed0/grpo-nomask"):
        assert (out / "single" / stage / "done.json").exists()
    # GRPO started from the SFT checkpoint; the ablation flag reached only its run
    nomask = json.loads(next((out / "single/seed0/grpo-nomask/checkpoints").glob("step_*/config.json")).read_text())
    mask = json.loads(next((out / "single/seed0/grpo-mask/checkpoints").glob("step_*/config.json")).read_text())
    assert nomask["mask_retrieved_tokens"] is False and mask["mask_retrieved_tokens"] is True
    assert Path(mask["init"]) == out / "single/seed0/sft"
    # a second run re-uses the finished stages (nothing re-trained) and rebuilds the same table
    stamp = (out / "single/seed0/sft/log.jsonl").stat().st_mtime
    assert bench.main(argv) == 0
    assert (out / "single/seed0/sft/log.jsonl").stat().st_mtime == stamp
    assert (out / "results.md").read_text() == table
