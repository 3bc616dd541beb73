"""Benchmark suites: named sets of (dataset, environment) pairs that any policy plays.

A suite is plain data (a dict here, or a JSON / TOML file of the same shape), so
users add their own:

    {"name": "mine", "env": "SearchEnvs/WikiBM25-v0", "env_kwargs": {"top_k": 3},
     "recall_engines": ["bm25"],
     "datasets": {"nq": {"tasks": "{data}/qa/deepresearcher_dev_7datasets.parquet#nq",
                         "fallback": "flashrag:nq", "n": 20}}}

`tasks` is a `load_tasks` spec; "{data}" is the shared data folder
(`SEARCH_ENVS_DATA`); when it is unset or the file is missing, `fallback` (e.g.
the FlashRAG copy on the HF hub) is used. `n` keeps the first n questions.

`run_suite` writes, per policy, an append-only JSONL of per-question records
(with trajectories) and skips records already there, so an interrupted run
resumes where it stopped; then a results table as Markdown and JSON and a
bar chart PNG, with each engine's answer recall beside the accuracy.

A suite may name the paper whose evaluation it reproduces (`"paper": "search_r1"` or
`"r1_searcher"`): the table then has that paper's own metrics (`PAPER_METRICS`, computed
as its released code does) beside ours, so a row can be set next to the paper's table.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from search_envs.data import shared_data_dir
from search_envs.datasets import FLASHRAG_DEFAULT_SPLITS
from search_envs.policies.base import EpisodeRecord, Policy, run_episodes, summarize
from search_envs.rewards import METRICS, PAPER_METRICS, answer_in_texts, search_r1_extract_solution

DR_PARQUET = "{data}/qa/deepresearcher_dev_7datasets.parquet"

SEARCH_R1_DATASETS = {
    # suite name: (data_source in the DeepResearcher parquet, FlashRAG config)
    "nq": ("nq", "nq"),
    "triviaqa": ("tq", "triviaqa"),
    "popqa": ("popqa", "popqa"),
    "hotpotqa": ("hotpotqa", "hotpotqa"),
    "2wiki": ("2wiki", "2wikimultihopqa"),
    "musique": ("musique", "musique"),
    "bamboogle": ("bamboogle", "bamboogle"),
}

SUITES: dict[str, dict[str, Any]] = {
    "quick": {
        "name": "quick",
        "description": "the embedded offline data: masked-prediction questions over the embedded Wikipedia",
        "env": "SearchEnvs/WikiBM25-v0",
        "env_kwargs": {"top_k": 3, "max_turns": 4},
        "recall_engines": ["bm25", "dense"],
        "datasets": {"ramp": {"tasks": "ramp:test", "n": 20}},
    },
    "standard": {
        "name": "standard",
        "description": "the seven QA datasets of Search-R1's main table on the local-Wikipedia env",
        "env": "SearchEnvs/WikiBM25-v0",
        "env_kwargs": {"top_k": 3, "max_turns": 4},
        "recall_engines": ["bm25", "dense"],
        "paper": "search_r1",
        "datasets": {
            name: {"tasks": f"{DR_PARQUET}#{source}", "fallback": f"flashrag:{config}", "n": 125}
            for name, (source, config) in SEARCH_R1_DATASETS.items()
        },
    },
    "synth": {
        "name": "synth",
        "description": "SynthWorld (docs/synthworld.md): invented facts no model knows, by question kind and hops",
        "env": "SearchEnvs/SynthWorld-v0",
        "env_kwargs": {"top_k": 3, "max_turns": 5},
        "recall_engines": ["bm25"],
        "datasets": {
            "single": {"tasks": "synth:test:kinds=single", "n": 50},
            "alias": {"tasks": "synth:test:kinds=alias", "n": 30},
            "2-hop": {"tasks": "synth:test:kinds=chain,hops=2", "n": 50},
            "3/4-hop": {"tasks": "synth:test:kinds=chain,hops=3-4", "n": 50},
            "comparison": {"tasks": "synth:test:kinds=comparison", "n": 30},
        },
    },
    "r1_searcher": {
        "name": "r1_searcher",
        "description": "R1-Searcher's evaluation sets (500 questions each, Bamboogle whole) with its protocol "
                       "and top-5 retrieval (evaluation/eval_search_loacl.py)",
        "env": "SearchEnvs/WikiBM25-v0",
        "env_kwargs": {"top_k": 5, "max_turns": 9, "protocol": "r1_searcher"},
        "recall_engines": ["bm25"],
        "paper": "r1_searcher",
        "datasets": {
            name: {"tasks": f"{{data}}/qa/r1searcher_{name}{suffix}.jsonl", "fallback": f"flashrag:{config}", "n": 125}
            for name, suffix, config in [("hotpotqa", "_500", "hotpotqa"), ("2wiki", "_500", "2wikimultihopqa"),
                                         ("musique", "_500", "musique"), ("bamboogle", "", "bamboogle")]
        },
    },
}

HUB = "{hub}"
"""In a suite's specs: the folder `search-envs data get` fills (`search_envs.hub.data_dir()`)."""

SUITES["searchr1"] = {
    "name": "searchr1",
    "description": "Search-R1's evaluation setting: wiki-18 (21,015,324 passages), e5-base-v2 + faiss Flat, "
                   "top-3, the seven full test sets (test or dev split as Search-R1), Search-R1's EM",
    "env": "SearchEnvs/WikiDense-v0",
    "env_kwargs": {"index_dir": f"{HUB}/indexes/wiki-18-e5", "top_k": 3, "max_turns": 4, "reward": "search_r1"},
    "paper": "search_r1",
    "recall_engines": ["dense"],
    "requires": {
        "data": [config for _, config in SEARCH_R1_DATASETS.values()],
        # wiki-18 + Search-R1's e5 Flat index, imported (or any index of them imported to this path)
        "index": f"{HUB}/indexes/wiki-18-e5",
        "encoder": "intfloat/e5-base-v2",
    },
    "datasets": {  # where `search-envs data get` puts each test set (full sets: no n)
        name: {"tasks": f"{HUB}/{config}/{config}/{FLASHRAG_DEFAULT_SPLITS[config]}.jsonl"}
        for name, (_, config) in SEARCH_R1_DATASETS.items()
    },
}

COLUMNS = [
    ("n", "n", "{:d}"),
    ("em", "EM", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
    ("cover_em", "cover-EM", "{:.3f}"),
    ("searches", "searches/q", "{:.2f}"),
    ("tokens", "tokens/q", "{:.1f}"),
    ("wall_time", "wall s/q", "{:.2f}"),
    ("answer_in_results", "answer seen", "{:.3f}"),
]


# -- suites ---------------------------------------------------------------------------
def suite_spec_help() -> str:
    """What `--suite` / `load_suite` accept, as the CLI's help and the error both say it."""
    return f"{' | '.join(SUITES)}, or a .json / .toml suite file"


def load_suite(spec: str | os.PathLike | dict) -> dict[str, Any]:
    """A suite from a built-in name, a .json / .toml file, or a dict; checked."""
    if isinstance(spec, dict):
        suite = copy.deepcopy(spec)
    elif str(spec) in SUITES:
        suite = copy.deepcopy(SUITES[str(spec)])
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no suite {str(spec)!r}: use {suite_spec_help()}")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml" and sys.version_info < (3, 11):
            raise ValueError(f"suite file {path}: a .toml suite needs Python 3.11 (tomllib); write it as .json")
        try:
            if path.suffix == ".toml":
                import tomllib  # here, not at the top: the CLI imports this module and starts on Python 3.10

                suite = tomllib.loads(text)
            else:
                suite = json.loads(text)
        except ValueError as exc:  # json's and tomllib's decode errors are ValueErrors
            raise ValueError(f"suite file {path} is not valid {path.suffix[1:]}: {exc}") from None
        suite.setdefault("name", path.stem)
    datasets = suite.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise ValueError("a suite needs a non-empty 'datasets' table: {name: {'tasks': spec, 'n': N}}")
    for name, entry in datasets.items():
        if not isinstance(entry, dict) or "tasks" not in entry:
            raise ValueError(f"suite dataset {name!r} needs a 'tasks' spec")
        if "n" in entry and (not isinstance(entry["n"], int) or entry["n"] < 1):
            raise ValueError(f"suite dataset {name!r}: n must be a positive integer")
    suite.setdefault("name", "suite")
    suite.setdefault("env", "SearchEnvs/WikiBM25-v0")
    suite.setdefault("env_kwargs", {})
    suite.setdefault("recall_engines", [])
    suite.setdefault("paper", None)
    if suite["paper"] is not None and suite["paper"] not in PAPER_METRICS:
        raise ValueError(f"suite paper {suite['paper']!r} is not one of {sorted(PAPER_METRICS)}")
    return suite


def paper_scores(records: Sequence[dict[str, Any]], paper: str | None) -> dict[str, float]:
    """The paper's own metrics, means over the records. Search-R1 reads the answer with its
    `extract_solution` over the whole trajectory, as its reward does."""
    if paper is None or not records:
        return {}
    scores = {}
    for name in PAPER_METRICS[paper]:
        total = 0.0
        for r in records:
            prediction = r.get("prediction")
            if paper == "search_r1" and r.get("trajectory"):
                prediction = search_r1_extract_solution(r["trajectory"])
            total += METRICS[name](prediction, r.get("answers") or [])
        scores[name] = total / len(records)
    return scores


def resolve_tasks(entry: dict[str, Any], n: int | None = None):
    """The dataset's TaskSet: its spec with {data} filled in, else its fallback."""
    from search_envs.datasets import load_tasks

    limit = n or entry.get("n")
    spec = fill_hub(str(entry["tasks"]))
    if "{data}" in spec:
        root = shared_data_dir()
        path = spec.replace("{data}", str(root)) if root else None
        if path is not None and Path(path.partition("#")[0]).is_file():
            return load_tasks(path, limit=limit)
        if "fallback" not in entry:
            raise FileNotFoundError(f"{spec} needs SEARCH_ENVS_DATA (the shared data folder) or a 'fallback' spec")
        return load_tasks(entry["fallback"], limit=limit)
    return load_tasks(spec, limit=limit)


def fill_hub(value: Any) -> Any:
    """A spec string with "{hub}" replaced by the `search-envs data get` folder."""
    if isinstance(value, str) and HUB in value:
        from search_envs.hub import data_dir

        return value.replace(HUB, str(data_dir()))
    return value


def missing_requirements(suite: dict[str, Any]) -> list[str]:
    """What a suite's `requires` table needs that is not here, each with the command that
    gets it; [] when it can run. Checks data items, the index and the encoder."""
    from search_envs.hub import ITEMS, status

    needs = suite.get("requires", {})
    missing = []
    for name in needs.get("data", []):
        state = status(ITEMS[name])
        if state != "present":
            missing.append(f"data {name} ({state}): `search-envs data get {name}` ({ITEMS[name].description})")
    if "index" in needs:
        from search_envs.index import BrokenIndexError, check_index

        where = Path(fill_hub(needs["index"]))
        try:
            check_index(where)  # also checks the originals an imported index references
        except BrokenIndexError as exc:
            problem = str(exc).split(". Rebuild it")[0]
            fetch = " ".join(name for name in ("wiki-18", "wiki-18-e5-flat") if status(ITEMS[name]) != "present")
            how = (f"`search-envs data get {fetch}` then " if fetch else "") + "`search-envs index import --from-data`"
            missing.append(f"index {where} ({problem}): {how}")
    if "encoder" in needs and not _model_available(needs["encoder"]):
        missing.append(f"encoder {needs['encoder']}: not in the Hugging Face cache; sentence-transformers downloads it "
                       f"on first use (needs the hub once, or HF_HUB_OFFLINE unset)")
    return missing


def _model_available(name: str) -> bool:
    if Path(name).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(name, "config.json"), str)


# -- resumable records -------------------------------------------------------------------
def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file. A last line cut off by a kill is dropped from the
    file (its episode is simply played again); a corrupt line elsewhere is an error."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    records = []
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not a JSON record ({exc}); move the file away to start over") from None
    return records


class RecordWriter:
    """Appends one JSON line per record and flushes it at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def policy_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("_")[:80] or "policy"


# -- answer recall -------------------------------------------------------------------------
def recall_index_notice(kind: str, k: int) -> str | None:
    """Why the run is about to build an index first (the dense one takes minutes on a CPU), or
    None when the recall engine's index is already in the cache."""
    from search_envs.index import cached_index_dir

    parts = ("bm25", "dense") if kind == "hybrid" else (kind,)  # a hybrid fuses the two cached indexes
    missing = [part for part in parts if part in ("bm25", "dense") and not cached_index_dir(part).is_dir()]
    if not missing:
        return None
    return (f"bench: the '{kind} recall@{k}' column needs a {' and a '.join(missing)} index of the embedded corpus, "
            f"not in the cache yet ({cached_index_dir(missing[0]).parent}): building it now, once")


def answer_recall(tasks: Sequence, engine, k: int = 3, batch_size: int = 256) -> float:
    """Share of tasks with a gold answer, as whole words, in one of the top-k passages the
    engine returns for the question itself: the ceiling of a one-search reader, which
    tells a weak retriever from a weak policy."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("answer_recall needs at least one task")
    hits = 0
    for i in range(0, len(tasks), batch_size):
        batch = tasks[i : i + batch_size]
        results = engine.search([t.question for t in batch], k)
        hits += sum(
            answer_in_texts(t.answers, [f"{d.title} {d.text}" for d in docs]) for t, docs in zip(batch, results)
        )
    return hits / len(tasks)


# -- running ---------------------------------------------------------------------------------
def run_suite(
    suite: str | os.PathLike | dict,
    policies: dict[str, Policy],
    out_dir: str | os.PathLike,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Play every dataset of the suite with every policy; write and return the results.

    policies: display name -> policy. n overrides each dataset's n. Records go to
    `out_dir/<policy>.jsonl` as they finish; a rerun skips those already there.
    """
    import gymnasium as gym

    import search_envs  # noqa: F401  (registers the ids)

    suite = load_suite(suite)
    missing = missing_requirements(suite) if "requires" in suite else []
    if missing:
        raise FileNotFoundError(f"suite {suite['name']!r} cannot run here; missing:\n  - " + "\n  - ".join(missing))
    env_kwargs = {key: fill_hub(value) for key, value in suite["env_kwargs"].items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = gym.make(suite["env"], **env_kwargs)
    base = env.unwrapped
    tasks_by_dataset = {name: resolve_tasks(entry, n) for name, entry in suite["datasets"].items()}

    recall: dict[str, dict[str, float]] = {}
    for kind in suite["recall_engines"]:
        from search_envs.engines import open_engine

        if kind == getattr(base.engine, "name", None):
            engine = base.engine
        else:
            notice = recall_index_notice(kind, base.top_k)
            if notice and progress:
                print(notice, file=sys.stderr, flush=True)
            engine = open_engine(kind)
        recall[kind] = {name: answer_recall(ts, engine, base.top_k) for name, ts in tasks_by_dataset.items()}

    results: dict[str, Any] = {"suite": suite["name"], "env": suite["env"], "env_kwargs": env_kwargs,
                               "top_k": base.top_k, "paper": suite["paper"], "recall": recall, "policies": {}}
    for pname, policy in policies.items():
        path = out / f"{policy_slug(pname)}.jsonl"
        done = read_records(path)
        writer = RecordWriter(path)
        try:
            for dname, tasks in tasks_by_dataset.items():
                seen = {r["id"] for r in done if r.get("dataset") == dname}
                todo = [t.id for t in tasks if t.id not in seen]
                if not todo:
                    continue
                denv = base.sibling(tasks=tasks)

                def save(rec: EpisodeRecord, dname: str = dname) -> None:
                    row = {"dataset": dname, "policy": pname, **rec.to_dict()}
                    writer.write(row)
                    done.append(row)

                run_episodes(policy, denv, task_ids=todo, seed=seed, batch_size=batch_size, on_record=save,
                             progress=f"{pname}/{dname}" if progress else False)
        finally:
            writer.close()
        rows = {}
        for dname, tasks in tasks_by_dataset.items():
            # only this run's questions count (a folder may hold records of a larger n)
            wanted = {t.id for t in tasks}
            latest = list({r["id"]: r for r in done if r.get("dataset") == dname and r["id"] in wanted}.values())
            rows[dname] = {**summarize(latest), **paper_scores(latest, suite["paper"])}
        if len(rows) > 1:
            rows["average"] = _average(rows.values(), columns(results))
        results["policies"][pname] = rows
    write_results(results, out)
    env.close()
    return results


def columns(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The table's columns: ours, then the suite's paper's own metrics."""
    paper = results.get("paper")
    return COLUMNS + [(name, name, "{:.3f}") for name in (PAPER_METRICS[paper] if paper else ())]


def _average(rows: Iterable[dict[str, float]], cols: Sequence[tuple[str, str, str]] = COLUMNS) -> dict[str, float]:
    """Macro average over datasets (each dataset counts once, as in Search-R1's table)."""
    rows = [r for r in rows if r.get("n")]
    if not rows:
        return {"n": 0}
    avg = {key: sum(r[key] for r in rows) / len(rows) for key, _, _ in cols if key != "n"}
    avg["n"] = int(sum(r["n"] for r in rows))
    return avg


# -- reports -----------------------------------------------------------------------------------
def results_table(results: dict[str, Any]) -> str:
    """The Markdown table: one row per (policy, dataset), recall columns at the end."""
    engines = list(results.get("recall", {}))
    k = results.get("top_k", "k")
    cols = columns(results)
    header = ["policy", "dataset"] + [title for _, title, _ in cols] + [f"{e} recall@{k}" for e in engines]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pname, rows in results["policies"].items():
        for dname, row in rows.items():
            cells = [pname, dname]
            for key, _, fmt in cols:
                cells.append(fmt.format(int(row[key]) if key == "n" else row[key]) if key in row else "-")
            for e in engines:
                values = results["recall"][e]
                value = values.get(dname, sum(values.values()) / len(values) if values and dname == "average" else None)
                cells.append("-" if value is None else f"{value:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    title = f"Suite `{results['suite']}` on `{results['env']}` (top_k={results.get('top_k')})\n\n"
    (out / "results.md").write_text(title + results_table(results), encoding="utf-8")
    plot_results(results, out / "results.png")


def plot_results(results: dict[str, Any], path: Path) -> None:
    """Grouped bars: EM per dataset, one bar per policy, with answer recall as a line marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    policies = list(results["policies"])
    datasets = list(next(iter(results["policies"].values()), {}).keys()) if policies else []
    width_in = min(16.0, max(6.0, 0.22 * len(datasets) * max(1, len(policies)) + 2.0))
    fig, ax = plt.subplots(figsize=(width_in, 4.5))
    width = 0.8 / max(1, len(policies))
    x = np.arange(len(datasets))
    for i, pname in enumerate(policies):
        ems = [results["policies"][pname][d].get("em", 0.0) for d in datasets]
        ax.bar(x + i * width - 0.4 + width / 2, ems, width, label=pname)
    for j, (engine, values) in enumerate(results.get("recall", {}).items()):
        ys = [values.get(d, np.nan) for d in datasets]
        if "average" in datasets and values:
            ys[datasets.index("average")] = sum(values.values()) / len(values)
        ax.scatter(x, ys, marker=["_", "x", "+", "1"][j % 4], s=400 if j == 0 else 100, color=["black", "dimgray", "gray", "silver"][j % 4],
                   zorder=3, label=f"{engine} answer recall@{results.get('top_k')}")
    ax.set_xticks(x, datasets, rotation=20)
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1)
    ax.set_title(f"suite {results['suite']}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
