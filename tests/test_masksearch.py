"""MaskSearch: RAMP with several masks per sentence over the embedded Wikipedia, its token-recall
reward, the curriculum over the number of masks, and the two-stage recipe with the reference agent."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from search_envs.agents.config import TrainConfig
from search_envs.agents.tiny import tiny_llama, torch_threads, word_tokenizer
from search_envs.agents.train import curriculum_stage, task_stages, train
from search_envs.datasets import load_tasks
from search_envs.ramp import MASK, candidate_spans, multi_mask_tasks_from_article
from search_envs.rewards import token_recall

TEXT = ("Marie Curie was born in Warsaw in 1867 and moved to Paris in 1891. She won the Nobel Prize in Physics "
        "in 1903 with Pierre Curie and Henri Becquerel. In 1911 she received the Nobel Prize in Chemistry for "
        "the discovery of polonium and radium.")


def test_multi_mask_tasks_restore_the_sentence():
    for seed in range(20):
        for k in (1, 2, 3):
            for task in multi_mask_tasks_from_article("Marie Curie", TEXT, seed=seed, per_article=3, mask_count=k):
                masks, sentence = task.metadata["masks"], task.metadata["sentence"]
                masked = re.search(r'": "(.*)"', task.question).group(1)
                assert task.metadata["mask_count"] == k == len(masks) == masked.count(MASK)
                assert task.answers == ("; ".join(masks),)
                restored = masked
                for m in masks:
                    restored = restored.replace(MASK, m, 1)
                assert restored == sentence  # the masks, in order, fill the sentence back
                assert "Marie Curie" not in masks
    with pytest.raises(ValueError, match="mask_count"):
        multi_mask_tasks_from_article("Marie Curie", TEXT, mask_count=5)


def test_masksearch_spec_over_the_embedded_corpus():
    train_tasks = load_tasks("masksearch:train")
    counts = Counter(t.metadata["mask_count"] for t in train_tasks)
    assert set(counts) == {1, 2, 3, 4} and len(train_tasks) > 3000
    two = load_tasks("masksearch:train:2")
    assert {t.metadata["mask_count"] for t in two} == {2} and len(two) > 1000
    test_titles = {t.metadata["title"] for t in load_tasks("masksearch:test")}
    assert test_titles and not test_titles & {t.metadata["title"] for t in train_tasks}
    with pytest.raises(ValueError, match="number of masks"):
        load_tasks("masksearch:train:many")


def test_mask_count_follows_gen_qa():
    """MaskSearch's src/RAMP/gen_qa.py (no licence file, so restated, not vendored): with fewer than
    3 candidate entities, 1..n masks; with 3, 3; with 4 or more, 4."""
    for task in list(load_tasks("masksearch:train"))[:600]:
        n = sum(len(v) for v in candidate_spans(task.metadata["sentence"], task.metadata["title"]).values())
        k = task.metadata["mask_count"]
        assert (1 <= k <= n) if n < 3 else k == min(n, 4), (n, k)


def test_masked_sentences_find_their_article(bm25_engine):
    tasks = list(load_tasks("masksearch:test:2"))[:40]
    queries = [re.search(r'": "(.*)"', t.question).group(1).replace(MASK, " ") for t in tasks]
    results = bm25_engine.search(queries, 3)
    found = [t.metadata["title"] in {d.title for d in docs} for t, docs in zip(tasks, results)]
    assert sum(found) >= 0.6 * len(tasks)


def test_token_recall():
    assert token_recall("Warsaw; 1867", ["Warsaw; 1867"]) == 1.0
    assert token_recall("Warsaw; 1900", ["Warsaw; 1867"]) == 0.5  # one span of two right: half credit
    assert token_recall("Warsaw Paris 1867 1891 more words", ["Warsaw; 1867"]) == 1.0  # long answers are not penalised
    assert token_recall(None, ["x"]) == 0.0


def test_curriculum_stages_follow_the_mask_count():
    tasks = load_tasks("masksearch:train")
    stages = task_stages(tasks, "mask_count")
    assert [{t.metadata["mask_count"] for t in tasks if t.id in set(s)} for s in stages] == [{1}, {2}, {3}, {4}]
    assert [stages.index(curriculum_stage(stages, step, 8)) for step in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="metadata"):
        task_stages(load_tasks("ramp:test"), "mask_count")


@pytest.mark.slow
def test_two_stage_recipe_with_the_reference_agent(tmp_path, bm25_engine):
    """Stage 1: RAMP pre-training on 'masksearch:train' with the mask-count curriculum; stage 2:
    downstream QA ('ramp:train' stands in for a QA set here) from stage 1's checkpoint."""
    from search_envs.vector import make_vec

    words = [t.question for t in load_tasks("masksearch:train")[:200]] + ["<search>", "</search>", "<answer>", "</answer>"]
    tokenizer = word_tokenizer(words)
    common = dict(questions_per_step=2, group_size=2, mini_batch_size=2, micro_batch_size=4, max_turns=2,
                  max_response_length=4, max_obs_length=32, use_chat_template=False, gradient_checkpointing=False,
                  eval_tasks=None, progress=False, device="cpu", actor_warmup_ratio=0.0, save_every=1000)
    stage1 = TrainConfig(algo="grpo", total_steps=4, task_curriculum="mask_count", output_dir=str(tmp_path / "s1"),
                         env_kwargs={"tasks": "masksearch:train", "reward": "token_recall"}, **common)
    env = make_vec("SearchEnvs/WikiBM25-v0", 4, tasks="masksearch:train", reward="token_recall", max_turns=2)
    with torch_threads(1):
        rows = train(stage1, model=tiny_llama(len(tokenizer), hidden_size=16, seed=0), tokenizer=tokenizer, env=env)
    assert [r["curriculum_stage"] for r in rows] == [0.0, 1.0, 2.0, 3.0]
    actor = tmp_path / "s1" / "checkpoints" / "step_000004" / "actor"
    assert (actor / "config.json").is_file()
    stage2 = TrainConfig(algo="grpo", total_steps=1, model=str(actor), output_dir=str(tmp_path / "s2"),
                         env_kwargs={"tasks": "ramp:train"}, **common)
    with torch_threads(1):
        rows = train(stage2, env=make_vec("SearchEnvs/WikiBM25-v0", 4, tasks="ramp:train", max_turns=2))
    assert len(rows) == 1 and json.loads((tmp_path / "s2" / "log.jsonl").read_text().splitlines()[0])["step"] == 1
