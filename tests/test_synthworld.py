"""SynthWorld: deterministic generation (a fixed digest, any hash seed), disjoint splits,
exact gold evidence, the task spec, and the registered envs searching the corpus with BM25."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import gymnasium as gym
import pytest

import search_envs  # noqa: F401
from search_envs.datasets import load_tasks
from search_envs.rewards import answer_in_texts
from search_envs.synthworld import WorldConfig, generate_world, parse_spec, write_world

DIGEST_SCRIPT = """
import hashlib, json
from search_envs.synthworld import WorldConfig, generate_world
w = generate_world(WorldConfig(seed=7, num_entities=120))
rows = [json.dumps(p, sort_keys=True) for p in w.passages]
rows += [json.dumps([t.id, t.question, list(t.answers), t.metadata], sort_keys=True) for t in w.all_tasks]
print(hashlib.sha256("\\n".join(rows).encode()).hexdigest())
"""

EXPECTED_DIGEST = "a2780b5d5464f824c08084e69ee02ce283c1d7a1645cfca5cc19b5b86358a148"


def world_digest(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_same_seed_same_world_on_any_machine():
    """The digest is fixed: a change in generation order (hash or set order, a library's
    RNG) changes it. Two interpreter hash seeds give the same world."""
    assert world_digest("1") == world_digest("12345") == EXPECTED_DIGEST


def test_world_shape_and_knobs():
    w = generate_world(WorldConfig(num_entities=100, passages_per_entity=1))
    assert len(w.entities) == 100
    assert len(w.passages) == 100  # one passage each
    w3 = generate_world(WorldConfig(num_entities=100, passages_per_entity=3))
    assert len(w3.passages) > 250
    kinds = {t.metadata["kind"] for t in w3.all_tasks}
    assert kinds == {"single", "alias", "chain", "comparison"}
    assert {t.metadata["hops"] for t in w3.tasks("all", kinds=("chain",))} == {2, 3, 4}
    # distractors: more shared surnames with a higher density
    def shared_surnames(density):
        people = [e for e in generate_world(WorldConfig(num_entities=200, distractor_density=density)).entities
                  if e.kind == "person"]
        surnames = [p.name.split()[-1] for p in people]
        return len(surnames) - len(set(surnames))
    assert shared_surnames(0.9) > shared_surnames(0.0) + 10
    with pytest.raises(ValueError):
        WorldConfig(num_entities=3)
    with pytest.raises(ValueError, match="unknown question kind"):
        w.tasks("train", kinds=("riddle",))


def test_num_cities_knob_sets_the_cities_and_every_birthplace_is_one_of_them():
    world = generate_world(WorldConfig(num_entities=300, num_cities=12))
    cities = {e.name for e in world.entities if e.kind == "city"}
    assert len(cities) == 12
    assert {e.attrs["birthplace"] for e in world.entities if e.kind == "person"} <= cities
    assert sum(e.kind == "city" for e in generate_world(WorldConfig(num_entities=300)).entities) == 60
    with pytest.raises(ValueError, match="num_cities"):
        WorldConfig(num_entities=300, num_cities=200)


def test_splits_are_disjoint_and_evidence_is_exact():
    w = generate_world()
    passages = {p["id"]: p["text"] for p in w.passages}
    train, test = w.tasks("train", kinds=None), w.tasks("test", kinds=None)
    assert {t.metadata["entity"] for t in train}.isdisjoint({t.metadata["entity"] for t in test})
    for t in w.all_tasks:
        evidence = [passages[pid] for pid in t.metadata["evidence"]]
        assert len(evidence) == (t.metadata["hops"] if t.metadata["kind"] == "chain" else len(evidence))
        # the answer is in the last hop's passage (or one of the compared passages)
        assert answer_in_texts(t.answers, evidence if t.metadata["kind"] == "comparison" else evidence[-1:]), t


def test_task_spec_and_files(tmp_path):
    tasks = load_tasks("synth:test:kinds=chain,hops=3-4,num_entities=120")
    assert {t.metadata["hops"] for t in tasks} == {3, 4} and {t.metadata["split"] for t in tasks} == {"test"}
    assert parse_spec("synth:train:hops=2+4,relations=author.birthplace,seed=3") == (
        {"seed": 3}, {"split": "train", "hops": (2, 4), "relations": ("author.birthplace",)})
    with pytest.raises(ValueError, match="unknown synth spec key"):
        load_tasks("synth:test:colour=red")
    paths = write_world(generate_world(WorldConfig(num_entities=60)), tmp_path)
    rows = [json.loads(x) for x in paths["corpus"].read_text().splitlines()]
    assert set(rows[0]) == {"id", "contents"} and rows[0]["contents"].startswith('"')
    assert len(load_tasks(str(paths["test"]))) == len(generate_world(WorldConfig(num_entities=60)).tasks("test", None))


def test_registered_envs_search_the_world_with_bm25():
    env = gym.make("SearchEnvs/SynthWorld-v0", tasks="test", top_k=3)
    base = env.unwrapped
    assert {t.metadata["kind"] for t in base.tasks} == {"single"}
    hits = 0
    for i in range(20):
        env.reset(options={"task_index": i})
        task = base.episode.task
        name = base.episode.task.question
        obs, *_ = env.step(f"<search> {name} </search>")
        hits += answer_in_texts(task.answers, [obs])
        _, reward, terminated, _, info = env.step(f"<answer> {task.answers[0]} </answer>")
        assert terminated and reward == 1.0
    assert hits >= 15  # the question itself finds its passage most of the time
    multi = gym.make("SearchEnvs/SynthWorldMultiHop-v0", tasks="synth:test:num_entities=120").unwrapped
    assert {t.metadata["hops"] for t in multi.tasks} == {2, 3, 4}


def test_teacher_searches_the_gold_path_and_never_search_stays_at_chance(tmp_path):
    """The synth suite: the teacher answers almost everything by searching, the oracle
    (one search of the question) fails multi-hop, the best never-search policy is at chance."""
    from search_envs.bench import run_suite
    from search_envs.policies import make_policy

    suite = {"name": "synth", "env": "SearchEnvs/SynthWorld-v0", "env_kwargs": {"top_k": 3, "max_turns": 5},
             "recall_engines": ["bm25"],
             "datasets": {"single": {"tasks": "synth:test:kinds=single", "n": 40},
                          "chain": {"tasks": "synth:test:kinds=chain,hops=2-4", "n": 40}}}
    names = ("synth_teacher", "majority", "oracle")
    results = run_suite(suite, {n: make_policy(n) for n in names}, tmp_path, progress=False)
    rows = results["policies"]
    assert rows["synth_teacher"]["single"]["em"] == 1.0 and rows["synth_teacher"]["chain"]["em"] >= 0.95
    assert rows["synth_teacher"]["chain"]["searches"] >= 2.0
    assert rows["oracle"]["single"]["em"] == results["recall"]["bm25"]["single"] >= 0.95
    assert rows["oracle"]["chain"]["em"] <= 0.1
    assert rows["majority"]["single"]["searches"] == 0 and rows["majority"]["single"]["em"] <= 0.35


def test_other_engines_search_the_world(tmp_path, monkeypatch):
    """The retrieval server (Search-R1's protocol) and the corpus-noise curriculum env take
    the world's corpus like any corpus."""
    from search_envs.engines import open_engine
    from search_envs.server import running_server
    from search_envs.synthworld import corpus_path

    config = WorldConfig(num_entities=60)
    task = generate_world(config).tasks("test")[0]
    query = f"<search> {task.metadata['search_path'][0]} </search>"
    with running_server(open_engine("bm25", corpus=corpus_path(config))) as url:
        monkeypatch.delenv("SEARCH_ENVS_API_KEY", raising=False)
        env = gym.make("SearchEnvs/SynthWorld-v0", engine=url, world={"num_entities": 60}, tasks="test")
        env.reset(options={"task_id": task.id})
        obs, *_ = env.step(query)
        assert answer_in_texts(task.answers, [obs])
        env.close()
    paths = write_world(generate_world(config), tmp_path)
    noisy = gym.make("SearchEnvs/NoisyWiki-v0", corpus=str(paths["corpus"]), tasks=str(paths["test"]),
                     noise_schedule=0.0)
    noisy.reset(options={"task_id": task.id})
    obs, *_ = noisy.step(query)
    assert answer_in_texts(task.answers, [obs])
