"""E2HQA: entity replacement over the real BM25 index of the embedded Wikipedia, with the
corpus's own descriptions (no LLM) and with a real LLM (SmolLM2), and the CLI."""

from __future__ import annotations

import json

import pytest

from search_envs.cli import main
from search_envs.datasets import load_tasks
from search_envs.e2hqa import (
    CorpusDescriptionDescriber,
    SearchLLMDescriber,
    check_description,
    pick_entity,
    replace_entity,
    synthesize,
    write_tasks,
)
from search_envs.types import Task

CURIE = Task("curie", "Which country did Marie Curie leave for France after studying in Warsaw?", ("Poland",))
URANUS = Task("uranus", "What rocket was the first spacecraft that ever approached Uranus launched on?", ("Titan IIIE",))


def test_description_checks():
    assert check_description("the seventh planet from the Sun", "Uranus", ["Titan IIIE"]) is None
    assert check_description("Rudolf Christian Diesel", "Rudolf Diesel", ["German"]) == "description names the entity"
    assert check_description("the capital of Poland", "Warsaw", ["Poland"]) == "description gives the answer away"
    assert check_description("  ", "Warsaw", ["Poland"]) == "empty description"
    assert check_description("word " * 30, "Warsaw", ["Poland"]) == "description too long"
    assert replace_entity("inventor of the Polio vaccine", "Polio", "the disease caused by poliovirus") == \
        "inventor of the disease caused by poliovirus vaccine"


def test_pick_entity_skips_answers_and_descriptions():
    import random

    q = "Which country did Marie Curie leave for France after studying in Warsaw?"
    picks = {pick_entity(q, ["Warsaw"], [], random.Random(s)) for s in range(30)}
    assert picks == {"Marie Curie", "France"}
    assert pick_entity(q, ["Warsaw"], ["the physicist Marie Curie", "France"], random.Random(0)) is None


def test_iterated_rewrites_with_corpus_descriptions(bm25_engine):
    results = synthesize([CURIE, URANUS], CorpusDescriptionDescriber(bm25_engine), iterations=3, seed=1)
    curie, uranus = results
    # three rounds try each entity once (in a seeded order): Marie Curie and France (articles of the
    # corpus found by searching for them) are replaced; Warsaw is refused, its description names the answer
    assert sorted(r.entity for r in curie.rewrites) == ["France", "Marie Curie"]
    assert "Marie Curie" not in curie.question and "France" not in curie.question and "Warsaw" in curie.question
    assert all(r.description in curie.question for r in curie.rewrites)
    assert [x.split(": ", 1)[1] for x in curie.refused] == ["description gives the answer away ('Warsaw')"]
    assert uranus.question == ("What rocket was the first spacecraft that ever approached the Seventh planet "
                               "from the Sun launched on?")
    assert uranus.task.answers == ("Titan IIIE",) and uranus.rewrites[0].evidence


def test_cli_writes_tasks_that_load_back(tmp_path, capsys):
    src = tmp_path / "easy.jsonl"
    src.write_text("".join(json.dumps({"id": t.id, "question": t.question, "golden_answers": list(t.answers)}) + "\n"
                           for t in (CURIE, URANUS)))
    out = tmp_path / "hard.jsonl"
    assert main(["tasks", "synthesize", "--tasks", str(src), "--describer", "corpus", "--iterations", "3",
                 "--seed", "1", "--output", str(out)]) == 0
    assert "2 of 2 questions written" in capsys.readouterr().out
    hard = load_tasks(str(out))
    assert [t.answers for t in hard] == [("Poland",), ("Titan IIIE",)]
    record = json.loads(out.read_text().splitlines()[0])
    assert record["metadata"]["original_question"] == CURIE.question and len(record["metadata"]["rewrites"]) == 2
    assert main(["tasks", "synthesize", "--tasks", str(src), "--generator", "openai", "--output", str(out)]) == 2


@pytest.mark.slow
def test_llm_describer_with_smollm2(bm25_engine, tmp_path):
    """A real LLM writes the descriptions: whatever it writes, an applied rewrite passed the checks
    and a refused one says why; the answer never changes."""
    from search_envs.generation import TransformersGenerator

    generator = TransformersGenerator(num_threads=1)
    try:
        results = synthesize([CURIE, URANUS], SearchLLMDescriber(bm25_engine, generator, max_new_tokens=24), iterations=1)
    finally:
        generator.close()
    for r in results:
        assert len(r.rewrites) + len(r.refused) == 1
        for rw in r.rewrites:
            assert check_description(rw.description, rw.entity, r.task.answers) is None and rw.description in r.question
        assert all(x.startswith("round 1: ") for x in r.refused)
    assert write_tasks(results, tmp_path / "out.jsonl", keep_unchanged=True) == 2
