"""SynthSimEngine: ZeroSearch's useful/noisy documents written exactly from a SynthWorld.
Checked over every question of a world: useful documents hold the true fact, false and
partial ones never hold the gold answer and state a wrong value of the asked attribute,
irrelevant ones are about other entities, and the realised noise follows the schedule."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import search_envs  # noqa: F401  (registers the ids)
from search_envs.curriculum import make_schedule
from search_envs.engines.synth_sim import NOISE_KINDS, SynthSimEngine, fact_sentence
from search_envs.rewards import substring_match
from search_envs.synthworld import WorldConfig, generate_world
from search_envs.types import QueryContext

WORLD = WorldConfig(seed=3, num_entities=200)


@pytest.fixture(scope="module")
def world():
    return generate_world(WORLD)


def single_tasks(world):
    return [t for t in world.all_tasks if t.metadata["kind"] == "single"]


def engine_of(world, kind: str, **kwargs) -> SynthSimEngine:
    return SynthSimEngine(world, noise_kinds=(kind,), **kwargs)


def search(engine, task, noisy: bool, k: int = 3):
    query = task.metadata["search_path"][0]
    return engine.search([query], k, [QueryContext(task.question, task.answers, noisy)])[0]


def text_of(docs) -> str:
    return " ".join(f"{d.title} {d.text}" for d in docs)


def test_useful_documents_state_the_true_facts(world):
    engine = engine_of(world, "false")
    tasks = single_tasks(world)
    assert len(tasks) > 200
    for task in tasks:
        entity = world.entity(task.metadata["entity"])
        docs = search(engine, task, noisy=False)
        assert docs[0].title == entity.name and docs[0].id == f"synthsim-useful-{entity.id}"
        for attr, value in entity.attrs.items():  # every true fact, in the world's own wording
            assert fact_sentence(entity, attr, value) in docs[0].text
        assert substring_match(docs[0].text, task.answers)
        relation = task.metadata["relation"]  # the asked fact leads, as a snippet would
        assert docs[0].text.startswith(fact_sentence(entity, relation, entity.attrs[relation]))
    assert engine.stats["useful"] == len(tasks)


def test_false_documents_never_hold_the_answer_and_state_a_wrong_value(world):
    engine = engine_of(world, "false")
    for task in single_tasks(world):
        entity = world.entity(task.metadata["entity"])
        attr, truth = task.metadata["relation"], entity.attrs[task.metadata["relation"]]
        docs = search(engine, task, noisy=True)
        assert docs and not substring_match(text_of(docs), task.answers), task.question
        first = docs[0]
        assert first.title == entity.name and first.id == f"synthsim-false-{entity.id}"
        wrong = [v for v in engine._values[attr] if v != truth and first.text.startswith(fact_sentence(entity, attr, v))]
        assert len(wrong) == 1, (task.question, first.text)  # the same attribute, one wrong value
        for a, v in entity.attrs.items():  # every attribute of a false document is false
            assert fact_sentence(entity, a, v) not in first.text
    assert engine.stats["false"] == len(single_tasks(world))


def test_partial_documents_mix_true_facts_with_a_false_answer_fact(world):
    engine = engine_of(world, "partial")
    for task in single_tasks(world):
        entity = world.entity(task.metadata["entity"])
        attr = task.metadata["relation"]
        docs = search(engine, task, noisy=True)
        assert not substring_match(text_of(docs), task.answers)
        first = docs[0]
        true_facts = [a for a, v in entity.attrs.items() if fact_sentence(entity, a, v) in first.text]
        assert attr not in true_facts and true_facts, (task.question, first.text)
        assert any(fact_sentence(entity, attr, v) in first.text for v in engine._values[attr])


def test_irrelevant_documents_are_about_other_entities(world):
    engine = engine_of(world, "irrelevant")
    for task in single_tasks(world)[:300]:
        entity = world.entity(task.metadata["entity"])
        docs = search(engine, task, noisy=True)
        assert len(docs) == 3 and all(d.title != entity.name for d in docs)
        assert not substring_match(text_of(docs), task.answers)
        for d in docs:  # the true facts of the entity they are about
            other = world.entity(d.id.removeprefix("synthsim-irrelevant-"))
            assert all(fact_sentence(other, a, v) in d.text for a, v in other.attrs.items())


def test_nicknames_near_namesakes_and_bad_queries(world):
    engine = SynthSimEngine(world)
    person = next(e for e in world.entities if "alias" in e.attrs)
    docs = engine.search([f"who is {person.attrs['alias']}?"], 3)[0]
    assert docs[0].title == person.name
    namesakes = [e for e in world.entities if e.kind == "person" and e.name.split()[-1] == person.name.split()[-1]]
    assert {d.title for d in engine.search([person.name], 10)[0]} >= {e.name for e in namesakes}
    assert engine.search(["", "   ", "zzqx unknown words"], 3) == [[], [], []]
    assert engine.search([person.name], 0) == [[]]
    with pytest.raises(ValueError, match="noise_kinds"):
        SynthSimEngine(world, noise_kinds=("made-up",))
    with pytest.raises(ValueError, match="contexts"):
        engine.search(["a", "b"], 3, [QueryContext()])


def test_repeatable_and_kinds_mixed(world):
    tasks = single_tasks(world)[:200]
    a, b = SynthSimEngine(world), SynthSimEngine(world)
    for task in tasks:
        assert search(a, task, True) == search(b, task, True)
    assert all(a.stats[k] > 30 for k in NOISE_KINDS)  # the three kinds drawn about evenly
    other = SynthSimEngine(world, seed=1)
    assert sum(search(other, t, True) != search(a, t, True) for t in tasks[:50]) > 25  # the seed varies the noise


def test_without_the_answer_partial_falsifies_half(world):
    engine = engine_of(world, "partial", include_answer=False)
    task = next(t for t in single_tasks(world) if t.metadata["relation"] == "birthplace")
    entity = world.entity(task.metadata["entity"])
    first = search(engine, task, noisy=True)[0]
    true_facts = [a for a, v in entity.attrs.items() if fact_sentence(entity, a, v) in first.text]
    assert len(true_facts) == len(entity.attrs) - len(entity.attrs) // 2


@pytest.mark.parametrize("spec", [{"name": "exponential", "base": 4}, {"name": "linear"}])
def test_realised_noise_follows_the_schedule(spec):
    """The registered env, progress set as a trainer does: the share of noisy searches
    in each fifth of training matches the schedule's mean there, and the served documents
    are noisy exactly when info says so."""
    steps, per_step = 50, 40
    env = gym.make("SearchEnvs/SynthSim-v0", world={"seed": 3}, top_k=2, max_turns=2,
                   noise_schedule={**spec, "p_start": 0.0, "p_end": 0.5, "total_steps": steps}).unwrapped
    schedule = make_schedule({**spec, "p_start": 0.0, "p_end": 0.5, "total_steps": steps})
    env.reset(seed=0)
    noisy = np.zeros((steps, per_step))
    for step in range(steps):
        env.set_progress(step)
        for j in range(per_step):
            _, _, term, trunc, info = env.step(f"<search> {env.episode.task.metadata['search_path'][0]} </search>")
            noisy[step, j] = info["noisy"][0]
            assert info["noise_probability"] == pytest.approx(schedule(step))
            served = {doc_id.split("-")[1] for doc_id in info["doc_ids"][0]}
            assert served <= ({"useful"} if not info["noisy"][0] else set(NOISE_KINDS))
            if term or trunc:
                env.reset()
    for chunk in np.array_split(np.arange(steps), 5):
        expected = np.mean([schedule(s) for s in chunk])
        assert abs(noisy[chunk].mean() - expected) < 0.08, (spec, chunk[0], noisy[chunk].mean(), expected)
    assert noisy[:5].mean() < 0.1 and noisy[-5:].mean() > 0.35
    env.close()


@pytest.mark.slow
def test_swap_for_an_llm_simulator(tmp_path):
    """The same env with generator="openai" asks a real OpenAI-compatible server (SmolLM2
    behind tests/openai_server.py) for the documents, with the same tasks and curriculum."""
    from openai_server import running_server
    from search_envs.engines.simulated import SimulatedEngine
    from search_envs.generation import TransformersGenerator

    generator = TransformersGenerator(num_threads=1)
    generator.load()
    with running_server(generator) as server:
        env = gym.make("SearchEnvs/SynthSim-v0", generator="openai", top_k=2,
                       generator_kwargs={"base_url": server.base_url, "model": server.model_name},
                       engine_kwargs={"max_new_tokens": 40}, cache=tmp_path / "sim.sqlite",
                       noise_schedule={"name": "constant", "p": 1.0}).unwrapped
        env.reset(seed=0)
        _, _, _, _, info = env.step(f"<search> {env.episode.task.metadata['search_path'][0]} </search>")
        assert isinstance(env.engine, SimulatedEngine) and info["noisy"] == [True]
        assert env.engine.stats["generated"] == 1
        env.close()
    with pytest.raises(ValueError, match="generator_kwargs"):
        gym.make("SearchEnvs/SynthSim-v0", generator_kwargs={"model": "x"})


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_the_teacher_finds_the_answer_exactly_when_the_search_was_useful(kind):
    """synth_teacher answers the gold answer only if the results showed it: on SynthSim-v0 its
    EM is the share of episodes whose one search was useful (1 - p), and 0 at p = 1."""
    from search_envs.policies import make_policy, run_episodes

    for p in (0.0, 0.5, 1.0):
        env = gym.make("SearchEnvs/SynthSim-v0", tasks="test", world={"seed": 3}, top_k=2, noise_kinds=(kind,),
                       noise_schedule={"name": "constant", "p": p})
        records = run_episodes(make_policy("synth_teacher"), env, n=120, seed=0, progress=False)
        em = np.mean([r.em for r in records])
        assert em == np.mean([r.answer_in_results for r in records])  # right exactly when the results held it
        assert abs(em - (1 - p)) < 0.14, (kind, p, em)  # 3 standard deviations at p = 0.5, n = 120
        if p != 0.5:
            assert em == 1 - p
        env.close()
