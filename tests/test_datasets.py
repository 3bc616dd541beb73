"""Task loading: the papers' file formats (real samples and files the tests
write), FlashRAG hub rows and the offline failure, RAMP specs, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from search_envs.datasets import (
    TaskFormatError,
    clean_answers,
    flashrag_rows_to_tasks,
    load_tasks,
    question_from_prompt,
    source_from_path,
)
from search_envs.protocols import SearchR1Protocol
from search_envs.tasks import TaskSet


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# --- real samples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, count, source",
    [
        ("r1searcher_hotpotqa_500.jsonl", 500, "hotpotqa"),
        ("r1searcher_2wiki_500.jsonl", 500, "2wiki"),
        ("r1searcher_musique_500.jsonl", 500, "musique"),
        ("r1searcher_bamboogle.jsonl", 125, "bamboogle"),
        ("r1searcher_train_stage2.jsonl", 8148, "r1searcher_train_stage2"),
    ],
)
def test_r1searcher_samples_load(shared_data, name, count, source):
    tasks = load_tasks(shared_data / "qa" / name)
    assert isinstance(tasks, TaskSet) and len(tasks) == count
    first = json.loads((shared_data / "qa" / name).read_text(encoding="utf-8").splitlines()[0])
    assert tasks[0].id == str(first["idx"])
    assert tasks[0].question == first["question"].strip()
    assert tasks[0].answers == clean_answers(first["answer"])
    assert all(t.source == source and t.question and t.answers for t in tasks)
    assert tasks.by_id(tasks[-1].id) is tasks[-1]


def test_deepresearcher_parquet_loads_with_sources_and_split_answers(shared_data):
    path = shared_data / "qa" / "deepresearcher_dev_7datasets.parquet"
    tasks = load_tasks(path)
    assert len(tasks) == 875
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.source] = counts.get(t.source, 0) + 1
    assert counts == {s: 125 for s in ("tq", "popqa", "hotpotqa", "musique", "nq", "Bamboogle", "2wiki")}
    first = tasks[0]
    assert first.id == "tq_qg_3477" and first.question.startswith("Lasting from 1299 to 1922")
    assert first.answers[:2] == ("türkiye", "türkei") and "turkey" in first.answers
    assert all("<|answer_split|>" not in a for t in tasks for a in t.answers)
    assert all(len(set(t.answers)) == len(t.answers) for t in tasks)
    cat = next(t for t in tasks if t.question == "Who was the producer of The Cat Returns?")
    assert cat.answers == ("Toshio Suzuki", "Suzuki Toshio")


def test_parquet_data_source_filter_by_fragment_and_kwarg(shared_data):
    path = shared_data / "qa" / "deepresearcher_dev_7datasets.parquet"
    by_fragment = load_tasks(f"{path}#popqa")
    by_kwarg = load_tasks(path, data_source="popqa", limit=10)
    assert len(by_fragment) == 125 and {t.source for t in by_fragment} == {"popqa"}
    assert [t.id for t in by_kwarg] == [t.id for t in by_fragment][:10]
    assert len(load_tasks(f"{path}#bamboogle")) == 125  # case-insensitive
    with pytest.raises(ValueError, match="no tasks with data source 'squad'.*popqa"):
        load_tasks(f"{path}#squad")


# --- formats written by the tests ------------------------------------------------------------


def test_flashrag_jsonl(tmp_path):
    (tmp_path / "nq").mkdir()
    path = write_jsonl(
        tmp_path / "nq" / "test.jsonl",
        [
            {"id": "test_0", "question": "who got the first nobel prize in physics?", "golden_answers": ["Wilhelm Conrad Röntgen"]},
            {"id": "test_1", "question": " when is the next deadpool movie? ", "golden_answers": ["May 18, 2018", "May 18, 2018", " "]},
        ],
    )
    tasks = load_tasks(path)
    assert [t.id for t in tasks] == ["test_0", "test_1"]
    assert tasks[0].answers == ("Wilhelm Conrad Röntgen",) and tasks[0].source == "nq"
    assert tasks[1].question == "when is the next deadpool movie?"
    assert tasks[1].answers == ("May 18, 2018",)  # deduplicated, blanks dropped


def test_r1searcher_jsonl_answer_list_and_missing_ids_use_line_numbers(tmp_path):
    path = write_jsonl(
        tmp_path / "custom.jsonl",
        [{"question": "q1", "answer": ["a", "b", "a"]}, {"question": "q2", "answer": 1999}],
    )
    path.write_text(path.read_text() + "\n\n", encoding="utf-8")  # trailing blank lines are fine
    tasks = load_tasks(path)
    assert [(t.id, t.answers) for t in tasks] == [("1", ("a", "b")), ("2", ("1999",))]
    assert tasks[0].source == "custom"


def test_json_array_file(tmp_path):
    path = tmp_path / "musique_dev.json"
    path.write_text(json.dumps([{"idx": 7, "question": "q", "answer": "x"}]), encoding="utf-8")
    tasks = load_tasks(path)
    assert tasks[0].id == "7" and tasks[0].source == "musique"


def test_search_r1_parquet_full_prompt_and_target_dict(tmp_path):
    prompt = SearchR1Protocol().prompt("who wrote the iliad?")
    rows = [
        {
            "data_source": source,
            "prompt": [{"role": "user", "content": prompt}],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": ["Homer", "Homer"]}},
            "extra_info": {"split": "test", "index": 0},
        }
        for source in ("nq", "hotpotqa")
    ]
    tasks = load_tasks(write_parquet(tmp_path / "test.parquet", rows))
    assert [t.question for t in tasks] == ["who wrote the iliad?"] * 2
    assert [t.answers for t in tasks] == [("Homer",)] * 2
    # per-source indexes repeat across sources: qualified with the source, still stable
    assert [t.id for t in tasks] == ["nq_0", "hotpotqa_0"]
    assert load_tasks(tmp_path / "test.parquet").by_id("hotpotqa_0").source == "hotpotqa"


def test_parquet_without_index_uses_row_numbers(tmp_path):
    rows = [
        {"data_source": "nq", "prompt": [{"role": "user", "content": f"q{i}?"}], "reward_model": {"ground_truth": "a<|answer_split|>b"}}
        for i in range(3)
    ]
    tasks = load_tasks(write_parquet(tmp_path / "x.parquet", rows))
    assert [t.id for t in tasks] == ["0", "1", "2"] and tasks[2].answers == ("a", "b")


def test_question_from_prompt():
    assert question_from_prompt("Answer it. Question: who is X?\n") == "who is X?"
    assert question_from_prompt("who is X?") == "who is X?"
    assert question_from_prompt("Question: a. question: b") == "b"  # the last marker wins
    assert question_from_prompt("Ends with Question:") == "Ends with Question:"


def test_clean_answers_and_source_names():
    assert clean_answers(["  a  b ", "a b", "", None, True, 3]) == ("a b", "3")
    assert clean_answers("x") == ("x",) and clean_answers(None) == ()
    assert source_from_path(Path("data/hotpotqa/dev.jsonl")) == "hotpotqa"
    assert source_from_path(Path("r1searcher_2wiki_500.jsonl")) == "2wiki"
    assert source_from_path(Path("my_questions.jsonl")) == "my_questions"


def test_limit(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"id": i, "question": f"q{i}", "answer": "a"} for i in range(5)])
    assert [t.id for t in load_tasks(path, limit=2)] == ["0", "1"]
    with pytest.raises(ValueError, match="limit"):
        load_tasks(path, limit=0)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"question": "q", "answer": "a"}', "{not json"], r"bad\.jsonl:2: invalid JSON"),
        (['{"question": "q", "answer": "a"}', "", '{"answer": "a"}'], r"bad\.jsonl:3: missing or empty field 'question'"),
        (['{"question": "q"}'], r"bad\.jsonl:1: no answer field"),
        (['{"question": "q", "golden_answers": []}'], r"bad\.jsonl:1: the answer field 'golden_answers' holds no"),
        (['["q", "a"]'], r"bad\.jsonl:1: expected a JSON object, got list"),
        (['{"id": 1, "question": "q", "answer": "a"}', '{"id": 1, "question": "r", "answer": "b"}'], "duplicate task id"),
        (["", "  ", ""], "the file is empty"),
    ],
)
def test_bad_jsonl_errors_name_file_and_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(TaskFormatError, match=message):
        load_tasks(path)


def test_bad_parquet_files(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(TaskFormatError, match="not a readable parquet"):
        load_tasks(tmp_path / "junk.parquet")
    good = {"data_source": "nq", "prompt": [{"role": "user", "content": "q?"}], "reward_model": {"ground_truth": "a"}}
    with pytest.raises(TaskFormatError, match=r"row 1: missing reward_model.ground_truth"):
        load_tasks(write_parquet(tmp_path / "a.parquet", [good, {**good, "reward_model": {"style": "rule"}}]))
    with pytest.raises(TaskFormatError, match=r"row 0: missing prompt\[0\].content"):
        load_tasks(write_parquet(tmp_path / "b.parquet", [{**good, "prompt": [{"role": "user", "content": " "}]}]))
    with pytest.raises(TaskFormatError, match="holds no answer"):
        load_tasks(write_parquet(tmp_path / "c.parquet", [{**good, "reward_model": {"ground_truth": {"target": []}}}]))
    empty = pa.Table.from_pylist([good]).slice(0, 0)
    pq.write_table(empty, tmp_path / "empty.parquet")
    with pytest.raises(TaskFormatError, match="no rows"):
        load_tasks(tmp_path / "empty.parquet")


def test_binary_and_hash_named_files(tmp_path):
    (tmp_path / "blob.jsonl").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(TaskFormatError, match="blob.jsonl: not UTF-8 text"):
        load_tasks(tmp_path / "blob.jsonl")
    odd = write_jsonl(tmp_path / "q#1.jsonl", [{"question": "q", "answer": "a"}])
    assert load_tasks(odd)[0].answers == ("a",)  # an existing file wins over the '#source' reading


def test_missing_file_and_unknown_spec():
    with pytest.raises(FileNotFoundError, match="no task file.*'ramp'"):
        load_tasks("does/not/exist.jsonl")
    with pytest.raises(ValueError, match="unknown RAMP split"):
        load_tasks("ramp:validation")


def test_split_is_refused_for_files(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(ValueError, match="a task file is one split"):
        load_tasks(path, split="train")


# --- FlashRAG hub ------------------------------------------------------------------------------


def test_flashrag_rows_to_tasks():
    rows = [
        {"id": "dev_0", "question": "Which magazine was started first?", "golden_answers": ["Arthur's Magazine"], "metadata": {"type": "comparison"}},
        {"id": "dev_1", "question": "q2", "golden_answers": ["x", "x", "y"]},
    ]
    tasks = flashrag_rows_to_tasks(rows, "hotpotqa", "dev")
    assert [(t.id, t.source, t.answers) for t in tasks] == [
        ("dev_0", "hotpotqa", ("Arthur's Magazine",)),
        ("dev_1", "hotpotqa", ("x", "y")),
    ]
    assert tasks[0].metadata == {"type": "comparison"} and tasks[1].metadata == {}
    with pytest.raises(TaskFormatError, match=r"FlashRAG_datasets/nq/test row 0: no answer field"):
        flashrag_rows_to_tasks([{"id": "a", "question": "q"}], "nq", "test")


def test_flashrag_offline_fails_fast_with_advice(tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1 and an empty HF cache: a clear error, no hang."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "from search_envs.datasets import load_tasks\n"
        "try:\n    load_tasks('flashrag:bamboogle')\n"
        "except RuntimeError as exc:\n    print('ERROR', exc)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "ERROR cannot load RUC-NLPIR/FlashRAG_datasets config 'bamboogle' split 'test'" in out.stdout, out.stderr
    assert "offline mode is on (the hub is unreachable)" in out.stdout and "pass its path" in out.stdout


@pytest.mark.timeout(30)
def test_flashrag_unreachable_hub_fails_fast(monkeypatch):
    """Online mode but a dead endpoint: one quick probe, not half a minute of retries."""
    import socket

    with socket.socket() as sock:  # a local port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(RuntimeError, match=r"hub is unreachable \(ConnectError for http://127.0.0.1.*bamboogle/test.jsonl"):
        load_tasks("flashrag:bamboogle")


def test_flashrag_spec_needs_a_dataset():
    with pytest.raises(ValueError, match="flashrag:<dataset>"):
        load_tasks("flashrag:")


# --- RAMP specs ----------------------------------------------------------------------------------


def test_ramp_specs():
    test = load_tasks("ramp")
    assert test.name == "ramp:test" and all(t.source == "ramp" for t in test)
    assert [t.id for t in load_tasks("ramp:test", limit=5)] == [t.id for t in test[:5]]
    train = load_tasks("ramp", split="train")
    assert len(train) > len(test) and not {t.id for t in train} & {t.id for t in test}
