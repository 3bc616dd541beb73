"""`search-envs train` end to end on the real BM25 env, then the checkpoint evaluated
through the benchmarks' policy interface (`checkpoint:DIR`)."""

from __future__ import annotations

import json

import pytest

from search_envs.agents.config import TrainConfig
from search_envs.agents.tiny import tiny_llama, torch_threads, word_tokenizer
from search_envs.cli import build_parser, main
from search_envs.commands.train import config_from_args


@pytest.fixture(autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


def test_every_config_field_is_an_option():
    args = build_parser().parse_args(
        ["train", "--algo", "ppo", "--steps", "7", "--no-mask-retrieved-tokens", "--kl-coef", "0.01",
         "--tasks", "ramp:test", "--top-k", "5", "--env-kwargs", '{"max_obs_chars": 100}', "--torch-threads", "1"]
    )
    cfg = config_from_args(args)
    assert cfg.algo == "ppo" and cfg.total_steps == 7 and cfg.mask_retrieved_tokens is False
    assert cfg.kl_coef == 0.01 and cfg.group_size == 1 and cfg.torch_threads == 1
    assert cfg.env_kwargs == {"max_obs_chars": 100, "tasks": "ramp:test", "top_k": 5}
    assert config_from_args(build_parser().parse_args(["train"])).env_kwargs == {"tasks": "ramp:train"}


def test_bad_algo_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--algo", "dpo"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'dpo'" in err and "'reinforce_pp'" in err
    assert len(err.splitlines()) <= 3  # the error, not 60 lines of usage first
    with pytest.raises(ValueError, match="algo must be one of"):  # the Python API checks it too
        TrainConfig(algo="dpo")
    with pytest.raises(ValueError, match="dtype must be one of"):
        TrainConfig(dtype="fp8")


def tiny_train_args(tmp_path) -> list[str]:
    """`search-envs train` on the BM25 env with a tiny word-level Llama saved under tmp_path:
    random words, so every action is invalid. Later options override these."""
    from search_envs.protocols import SearchR1Protocol

    p = SearchR1Protocol()
    tokenizer = word_tokenizer([p.prompt("x"), p.error_observation("no <search> or <answer> block")])
    model_dir = tmp_path / "tiny"
    tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return ["train", "--algo", "grpo", "--model", str(model_dir), "--tasks", "ramp:train",
            "--eval-tasks", "ramp:test", "--eval-episodes", "2", "--steps", "2", "--questions-per-step", "1",
            "--group-size", "2", "--mini-batch-size", "1", "--max-response-length", "4", "--max-turns", "2",
            "--no-gradient-checkpointing", "--device", "cpu", "--output-dir", str(tmp_path / "run"), "--no-progress"]


@pytest.mark.slow
def test_cli_trains_and_checkpoint_evaluates_through_policy_interface(tmp_path):
    out = tmp_path / "run"
    rc = main(tiny_train_args(tmp_path) + ["--save-every", "1"])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in rows] == [("eval", 0), ("train", 1), ("train", 2), ("eval", 2)]
    assert rows[1]["turns"] == 2  # random words are invalid actions: two turns, an error observation between
    assert 0 < rows[1]["masked_token_share"] < 1
    assert (out / "checkpoints" / "latest").read_text() == "step_000002"
    assert (out / "curves.png").is_file()

    from search_envs.agents.evaluate import evaluate_checkpoint

    summary, records = evaluate_checkpoint(out, tasks="ramp:test", n=2, max_new_tokens=4, batch_size=2,
                                           env_kwargs={"max_turns": 2}, device="cpu", progress=False)
    assert summary["n"] == 2 and 0.0 <= summary["em"] <= 1.0
    assert all(r.turns == 2 for r in records)


def test_reward_spec_option_builds_a_reward_spec(capsys):
    from search_envs.rewards import RewardSpec

    spec = '{"answer_metric": "f1", "format_weight": 0.5, "retrieval_weight": 0.25}'
    cfg = config_from_args(build_parser().parse_args(["train", "--reward-spec", spec, "--reward", "em"]))
    assert cfg.reward_spec == {"answer_metric": "f1", "format_weight": 0.5, "retrieval_weight": 0.25}
    assert cfg.make_reward_spec() == RewardSpec("f1", format_weight=0.5, retrieval_weight=0.25)
    assert config_from_args(build_parser().parse_args(["train"])).make_reward_spec() is None
    assert main(["train", "--reward-spec", '{"answer_metric": "bleu"}']) == 2
    assert "unknown answer metric" in capsys.readouterr().err
    assert main(["train", "--reward-spec", '{"format_wieght": 1}']) == 2
    assert "bad reward_spec" in capsys.readouterr().err


@pytest.mark.slow
def test_reward_spec_reaches_training_and_eval_envs(tmp_path):
    out = tmp_path / "run"
    # random words never form an answer: every episode gets the format penalty, and nothing else
    rc = main(tiny_train_args(tmp_path) + ["--reward-spec", '{"answer_metric": "f1", "format_penalty": -1.0}',
                                           "--steps", "1", "--max-turns", "1"])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["type"], r["reward"]) for r in rows] == [("eval", -1.0), ("train", -1.0), ("eval", -1.0)]
    assert rows[1]["format_rate"] == 0.0
    saved = json.loads(next((out / "checkpoints").glob("step_*/config.json")).read_text())
    assert saved["reward_spec"] == {"answer_metric": "f1", "format_penalty": -1.0}
