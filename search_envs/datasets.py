"""Question-answering task sources: local files in the papers' formats, the
FlashRAG collection on the Hugging Face hub, and the offline RAMP set.

`load_tasks(spec)` is the one entry point (the environments call it):

- ``"ramp"``, ``"ramp:train"``, ``"ramp:test"``: masked-prediction tasks made
  from the embedded Wikipedia corpus (see `search_envs.ramp`); no download.
- ``"open_ended:<split>"``: O²-Searcher-style open-ended questions (key findings as answers).
- ``"masksearch:<split>[:<k>]"``: RAMP with 1-4 masks per sentence (or exactly k), MaskSearch's
  task; `metadata["mask_count"]` orders a curriculum (`TrainConfig.task_curriculum`).
- a file path, format detected from its content:
  FlashRAG jsonl ``{"id", "question", "golden_answers": [...]}``,
  R1-Searcher jsonl ``{"idx", "question", "answer"}`` (answer a string or a list),
  Search-R1 / verl parquet (``data_source``, ``prompt[0].content``,
  ``reward_model.ground_truth``). ``"file.parquet#hotpotqa"`` keeps one data source.
- ``"flashrag:<dataset>[:<split>]"``: `RUC-NLPIR/FlashRAG_datasets` via `datasets`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from search_envs.tasks import TaskSet
from search_envs.types import Task

FLASHRAG_REPO = "RUC-NLPIR/FlashRAG_datasets"
FLASHRAG_DEFAULT_SPLITS = {
    "nq": "test",
    "triviaqa": "test",
    "popqa": "test",
    "hotpotqa": "dev",
    "2wikimultihopqa": "dev",
    "musique": "dev",
    "bamboogle": "test",
}
"""The configs we document and the split Search-R1 evaluates on (other configs work too)."""

KNOWN_SOURCES = (*FLASHRAG_DEFAULT_SPLITS, "2wiki", "tq", "webquestions", "strategyqa", "asqa")
"""Dataset names recognised in file names, so `source` says 'hotpotqa' rather than a file stem."""

ANSWER_SPLIT = "<|answer_split|>"
"""DeepResearcher joins gold answers with this in `reward_model.ground_truth`."""

_QUESTION_MARKER = re.compile(r"Question:\s*", re.IGNORECASE)

SPEC_HELP = (
    "a task spec is 'ramp', 'ramp:train', 'ramp:test', 'masksearch:<split>[:<masks>]', 'open_ended:<split>', "
    "'flashrag:<dataset>[:<split>]', 'synth:<split>[:k=v,...]', "
    "or the path of a .jsonl / .json / .parquet file (optionally 'file.parquet#<data_source>')"
)


class TaskFormatError(ValueError):
    """A task file that cannot be read; the message names the file and line."""


def load_tasks(
    spec: str | os.PathLike,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    data_source: str | None = None,
) -> TaskSet:
    """Load a task set from a spec (see the module docstring).

    split: for 'ramp', 'masksearch' and 'flashrag:' specs (overrides the one in the spec).
    limit: keep the first `limit` tasks in the set's order (file order; RAMP's
    is a seeded shuffle). seed: picks RAMP's masks.
    data_source: keep only rows of this source (parquet `data_source`, or `source`).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit}")
    text = os.fspath(spec)
    path_part, _, fragment = ("", "", "") if Path(text).is_file() else text.partition("#")
    path_part = path_part or text
    data_source = data_source or fragment or None
    head, _, rest = path_part.partition(":")
    if head == "ramp" and not Path(text).exists():
        from search_envs.ramp import ramp_tasks

        ramp_split = split or rest or "test"
        tasks: list[Task] = list(ramp_tasks(ramp_split, seed=seed))
        name = f"ramp:{ramp_split}"
    elif head == "synth" and not Path(text).exists():
        from search_envs.synthworld import synth_tasks

        tasks, name = list(synth_tasks(path_part)), path_part
    elif head == "open_ended" and not Path(text).exists():
        from search_envs.open_ended import open_ended_tasks

        oe_split = split or rest or "test"
        tasks = list(open_ended_tasks(oe_split, seed=seed))
        name = f"open_ended:{oe_split}"
    elif head == "masksearch" and not Path(text).exists():
        from search_envs.ramp import masksearch_tasks

        ms_split, _, count = rest.partition(":")
        ms_split = split or ms_split or "train"
        if count and not count.isdigit():
            raise ValueError(f"'masksearch:<split>:<k>' takes a number of masks, got {count!r}")
        tasks = list(masksearch_tasks(ms_split, seed=seed, mask_count=int(count) if count else None))
        name = f"masksearch:{ms_split}" + (f":{count}" if count else "")
    elif head == "flashrag" and not Path(text).exists():
        dataset, _, spec_split = rest.partition(":")
        tasks = load_flashrag(dataset, split or spec_split or None)
        name = f"flashrag:{dataset}"
    else:
        if split is not None:
            raise ValueError(f"split={split!r} applies to 'ramp' and 'flashrag:' specs; a task file is one split")
        path = Path(path_part).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no task file {str(path)!r}; {SPEC_HELP}")
        tasks = read_task_file(path)
        name = path.name
    if data_source is not None:
        kept = [t for t in tasks if t.source.lower() == data_source.lower()]
        if not kept:
            sources = sorted({t.source for t in tasks})
            raise ValueError(f"no tasks with data source {data_source!r} in {name}; sources: {sources}")
        tasks, name = kept, f"{name}#{data_source}"
    if limit is not None:
        tasks = tasks[:limit]
    return TaskSet(tasks, name=name)


def read_task_file(path: str | os.PathLike) -> list[Task]:
    """Read a local task file, detecting its format from the content."""
    path = Path(path)
    if path.suffix == ".parquet":
        return _read_parquet(path)
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096).lstrip()
        if not head:
            raise TaskFormatError(f"{path}: the file is empty")
        if head.startswith("[") and path.suffix != ".jsonl":
            return _read_json_array(path)
        return _read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise TaskFormatError(f"{path}: not UTF-8 text (byte {exc.start} of a chunk); expected jsonl, json or parquet") from None


def _read_jsonl(path: Path) -> list[Task]:
    source = source_from_path(path)
    tasks = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFormatError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            tasks.append(task_from_record(record, source=source, fallback_id=str(lineno), where=where))
    if not tasks:
        raise TaskFormatError(f"{path}: no records (only blank lines)")
    return _unique_ids(tasks, path)


def _read_json_array(path: Path) -> list[Task]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TaskFormatError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(records, list) or not records:
        raise TaskFormatError(f"{path}: expected a non-empty JSON list of records")
    source = source_from_path(path)
    tasks = [
        task_from_record(r, source=source, fallback_id=str(i), where=f"{path}: record {i}")
        for i, r in enumerate(records, start=1)
    ]
    return _unique_ids(tasks, path)


def task_from_record(record: Any, source: str, fallback_id: str, where: str) -> Task:
    """One FlashRAG or R1-Searcher record (also a FlashRAG hub row) as a Task.

    FlashRAG: {"id", "question", "golden_answers": [...]}; R1-Searcher:
    {"idx", "question", "answer"} where answer is a string or a list. A "metadata" object is
    kept as the task's metadata. `where` (file:line) prefixes every error.
    """
    if not isinstance(record, Mapping):
        raise TaskFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise TaskFormatError(f"{where}: missing or empty field 'question'")
    for key in ("golden_answers", "answer", "answers"):
        if key in record:
            answers = clean_answers(record[key])
            break
    else:
        raise TaskFormatError(f"{where}: no answer field (expected 'golden_answers', 'answer' or 'answers')")
    if not answers:
        raise TaskFormatError(f"{where}: the answer field {key!r} holds no non-empty answer")
    task_id = next((record[k] for k in ("id", "idx", "_id") if record.get(k) not in (None, "")), fallback_id)
    metadata = dict(record["metadata"]) if isinstance(record.get("metadata"), Mapping) else {}  # e.g. SynthWorld's evidence
    return Task(str(task_id), question.strip(), answers, source=source, metadata=metadata)


def task_from_verl_row(row: Mapping[str, Any], fallback_id: str, where: str) -> Task:
    """One Search-R1 / verl parquet row as a Task.

    `prompt[0].content` is either the bare question (DeepResearcher) or a full
    instruction prompt ending in 'Question: ...' (Search-R1), read only when `extra_info.question`
    (written by `export_verl`) does not give the question as is; `ground_truth` is
    {"target": [...]} (Search-R1) or answers joined by '<|answer_split|>'.
    """
    source = str(row.get("data_source") or "")
    prompt = row.get("prompt")
    prompt = _as_list(prompt)
    content = prompt[0].get("content") if prompt and isinstance(prompt[0], Mapping) else None
    if not isinstance(content, str) or not content.strip():
        raise TaskFormatError(f"{where}: missing prompt[0].content")
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), Mapping) else {}
    question = extra.get("question")  # our exports keep it: the prompt may have changed it (a "?" added)
    if not isinstance(question, str) or not question.strip():
        question = question_from_prompt(content)
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, Mapping) or reward_model.get("ground_truth") is None:
        raise TaskFormatError(f"{where}: missing reward_model.ground_truth")
    truth = reward_model["ground_truth"]
    if isinstance(truth, Mapping):
        truth = truth.get("target", truth.get("answers"))
    if isinstance(truth, str):
        truth = truth.split(ANSWER_SPLIT)
    answers = clean_answers(truth)
    if not answers:
        raise TaskFormatError(f"{where}: reward_model.ground_truth holds no answer")
    task_id = row.get("id") or extra.get("index")
    task_id = fallback_id if task_id is None or task_id == "" else str(task_id)
    return Task(task_id, question, answers, source=source, metadata={"row": fallback_id})


def question_from_prompt(content: str) -> str:
    """The question inside a Search-R1 prompt ('... Question: q\\n'), or the content itself."""
    markers = list(_QUESTION_MARKER.finditer(content))
    if markers:
        question = content[markers[-1].end() :].strip()
        if question:
            return question
    return content.strip()


def _read_parquet(path: Path) -> list[Task]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise TaskFormatError(f"{path}: not a readable parquet file ({exc})") from None
    if not rows:
        raise TaskFormatError(f"{path}: the parquet file has no rows")
    if "prompt" not in rows[0] and "question" in rows[0]:
        source = source_from_path(path)
        tasks = [
            task_from_record(r, source=r.get("data_source") or source, fallback_id=str(i), where=f"{path}: row {i}")
            for i, r in enumerate(rows)
        ]
    else:
        tasks = [task_from_verl_row(r, fallback_id=str(i), where=f"{path}: row {i}") for i, r in enumerate(rows)]
    return _unique_ids(tasks, path)


def _unique_ids(tasks: list[Task], path: Path) -> list[Task]:
    """Ids repeat across sources in merged files (Search-R1's per-source index):
    qualify them with the source; a clash within one source is an error."""
    if len({t.id for t in tasks}) == len(tasks):
        return tasks
    qualified = [
        t if t.id.startswith(f"{t.source}_") else Task(f"{t.source}_{t.id}", t.question, t.answers, t.source, t.metadata)
        for t in tasks
    ]
    seen: dict[str, int] = {}
    for i, t in enumerate(qualified, start=1):
        if t.id in seen:
            raise TaskFormatError(f"{path}: duplicate task id {t.id!r} (records {seen[t.id]} and {i})")
        seen[t.id] = i
    return qualified


def clean_answers(value: Any) -> tuple[str, ...]:
    """Gold answers as a tuple of stripped, non-empty, de-duplicated strings (order kept)."""
    out: dict[str, None] = {}
    for item in _as_list(value):
        if isinstance(item, (str, int, float)) and not isinstance(item, bool):
            text = " ".join(str(item).split())
            if text:
                out.setdefault(text, None)
    return tuple(out)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)):
        return [value]
    if hasattr(value, "tolist"):  # numpy arrays from pandas
        value = value.tolist()
    return list(value) if isinstance(value, Iterable) else [value]


def source_from_path(path: Path) -> str:
    """A dataset name from the file name or its folder ('nq/test.jsonl' -> 'nq')."""
    for part in (path.stem, path.parent.name):
        tokens = re.split(r"[^a-z0-9]+", part.lower())
        for name in KNOWN_SOURCES:
            if name in tokens:
                return name
    return path.stem


def load_flashrag(dataset: str, split: str | None = None) -> list[Task]:
    """A FlashRAG dataset from the Hugging Face hub (cached by `datasets`).

    Needs the network the first time; offline it fails at once with a message
    saying how to use a local file instead.
    """
    if not dataset:
        raise ValueError("flashrag spec needs a dataset: 'flashrag:<dataset>[:<split>]', e.g. 'flashrag:nq:test'")
    split = split or FLASHRAG_DEFAULT_SPLITS.get(dataset, "test")
    try:
        from datasets import load_dataset
    except ImportError:
        raise ImportError("'flashrag:' specs need the `datasets` package: pip install 'search-envs[hub]'") from None
    advice = (
        f"download {dataset}/{split}.jsonl from the {FLASHRAG_REPO} dataset repo on a machine with access "
        "and pass its path as the task spec instead (or set HF_HUB_OFFLINE=1 to use a copy in the Hugging Face cache)"
    )
    offline = any(os.environ.get(v, "") not in ("", "0", "false") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not offline:
        problem = hub_unreachable()
        if problem:
            raise RuntimeError(f"cannot load {FLASHRAG_REPO}: the Hugging Face hub is unreachable ({problem}); {advice}")
    try:
        rows = load_dataset(FLASHRAG_REPO, dataset, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        reason = f"{type(exc).__name__}: {exc}"
        if offline:
            reason = f"offline mode is on (the hub is unreachable) and the cache has no copy ({reason})"
        raise RuntimeError(f"cannot load {FLASHRAG_REPO} config {dataset!r} split {split!r}: {reason}; {advice}") from exc
    return flashrag_rows_to_tasks(rows, dataset, split)


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached, or None. One quick request, because
    `datasets` retries a dead connection for half a minute or more before failing."""
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        httpx.head(f"{endpoint}/api/datasets/{FLASHRAG_REPO}", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__} for {endpoint}"
    return None


def flashrag_rows_to_tasks(rows: Iterable[Mapping[str, Any]], dataset: str, split: str) -> list[Task]:
    """FlashRAG hub rows ({"id", "question", "golden_answers", ...}) as Tasks."""
    tasks = [
        task_from_record(row, source=dataset, fallback_id=str(i), where=f"{FLASHRAG_REPO}/{dataset}/{split} row {i}")
        for i, row in enumerate(rows)
    ]
    if not tasks:
        raise TaskFormatError(f"{FLASHRAG_REPO}/{dataset}/{split} has no rows")
    return _unique_ids(tasks, Path(f"{FLASHRAG_REPO}/{dataset}/{split}"))
