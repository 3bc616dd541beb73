"""ZeroSearch's simulated search engine: an LLM writes the search results.

For each query the simulator LLM is asked, with ZeroSearch's own prompt (Table 2
of the paper, `search_simulate_sft` in its code), for k short documents that
are either *useful* or *noisy*; the environment picks the mode per query from
its noise curriculum (`QueryContext.noisy`). As in the paper the prompt includes
the question and its gold answer (`include_answer=True`), which widens a small
simulator's knowledge; turn it off for evaluation.

Generation goes through the project's batched `search_envs.generation.Generator`
(backends: "transformers", any local causal LM, SmolLM2-135M-Instruct offline by
default; "openai", an sglang / vLLM / OpenAI-compatible server; "vllm", vLLM
in-process, optional). Results are cached on disk in SQLite so evaluation is
repeatable and a repeated query costs a lookup.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search_envs.engines.base import SearchEngine
from search_envs.engines.base import SearchFailure
from search_envs.generation import Generator, make_generator
from search_envs.llm_client import LLMError, Message
from search_envs.rewards import substring_match
from search_envs.types import Document, QueryContext

PROMPT_VERSION = "zerosearch-sft-v2"
"""Part of every cache key: bump it when the prompt or the parser changes."""

_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def simulation_prompt(query: str, mode: str, k: int, question: str = "", answers: Sequence[str] = ()) -> str:
    """ZeroSearch's simulation prompt, word for word (`search_simulate_sft`): it always asks
    for five documents and keeps the first k (results are cut at "Doc k+1"), and names only
    the first gold answer. For k > 5 it asks for k (deliberate: ZeroSearch would return at
    most five). The question/answer sentence is included only when a question is given
    (include_answer=True)."""
    if mode not in ("useful", "noisy"):
        raise ValueError(f"mode must be 'useful' or 'noisy', got {mode!r}")
    count = _NUMBER_WORDS[max(k, 5)] if k < len(_NUMBER_WORDS) else str(k)
    lines = [
        "You are the Google search engine.",
        f"Given a query, you need to generate {count} {mode} documents for the query.",
        "",
    ]
    if question:
        answer = next((a for a in answers if a), "unknown")
        lines.append(f'The user is trying to answer the question: "{question}" whose answer is {answer}.')
    lines += [
        f"Each document should contain about 30 words, and these documents should contain {mode} information.",
        "",
        f"Query: {query}",
        f"{mode.capitalize()} Output:",
        "",
    ]
    return "\n".join(lines)


# -- parsing -------------------------------------------------------------------------
_ITEM = re.compile(
    r"""^[ \t]*(?:[-*\u2022][ \t]*)?(?:\*\*|__)?[ \t]*
    (?:(?:doc(?:ument)?|result|passage|source)[ \t]*\#?[ \t]*\d{1,2}|\[\d{1,2}\]|\(\d{1,2}\)|\d{1,2}[.)])
    [ \t]*(?:\*\*|__)?[ \t]*[:.)\-\u2013\u2014]?[ \t]*(?:\*\*|__)?""",
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
_PREAMBLE = re.compile(r"^\s*(?:useful|noisy)?\s*output\s*:\s*", re.IGNORECASE)
_TITLE = re.compile(r'^\(?\s*title\s*:\s*"?([^"\n)]{1,200})"?\s*\)?\s*[:\-]?\s*', re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def parse_documents(text: str, k: int, max_words: int = 80) -> list[tuple[str, str]]:
    """Split an LLM's output into at most `k` (title, text) documents.

    Accepts "Doc 1: ...", "Document 1.", "1.", "1)", "[1]", "- ", bold markers,
    or plain paragraphs / lines when there is no numbering. Each document is its
    first paragraph, with looping sentences collapsed and at most `max_words`
    words; empty and duplicate documents are dropped. Title is "" unless the
    model wrote one ("Title: ..."). Never raises; empty output gives [].
    """
    if not isinstance(text, str) or k < 1:
        return []
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    starts = [m for m in _ITEM.finditer(text)]
    if starts:
        pieces = [text[m.end() : (starts[i + 1].start() if i + 1 < len(starts) else len(text))] for i, m in enumerate(starts)]
    else:
        body = _PREAMBLE.sub("", text)
        pieces = re.split(r"\n\s*\n", body) if "\n\n" in body.strip() else body.split("\n")
    docs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for piece in pieces:
        doc = _clean_piece(piece, max_words)
        if doc is None:
            continue
        key = " ".join(re.findall(r"\w+", doc[1].lower()))
        if key in seen:
            continue
        seen.add(key)
        docs.append(doc)
        if len(docs) == k:
            break
    return docs


def _clean_piece(piece: str, max_words: int) -> tuple[str, str] | None:
    paragraph = re.split(r"\n\s*\n", piece.strip(), maxsplit=1)[0]
    paragraph = _PREAMBLE.sub("", paragraph)
    paragraph = " ".join(paragraph.replace("**", " ").replace("__", " ").split()).strip(" \"'`")
    title = ""
    match = _TITLE.match(paragraph)
    if match:
        title, paragraph = match.group(1).strip(), paragraph[match.end() :]
    sentences: list[str] = []
    for sentence in _SENTENCE.split(paragraph):
        if sentence and sentence not in sentences:  # a model stuck in a loop
            sentences.append(sentence)
    words = " ".join(sentences).split()
    if not any(re.search(r"\w", w) for w in words):
        return None
    return title, " ".join(words[:max_words])


# -- cache ---------------------------------------------------------------------------------------
class SimulationCache:
    """Simulated documents on disk (SQLite, WAL), shared safely by threads and processes.

    Keys are hashes of everything that shapes the output (see `SimulatedEngine.cache_key`);
    `hits` and `misses` count lookups made through this object.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS simulated (key TEXT PRIMARY KEY, query TEXT, mode TEXT, model TEXT, "
                "include_answer INTEGER, k INTEGER, raw TEXT, documents TEXT, created REAL)"
            )
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        found: dict[str, list[tuple[str, str]]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):  # SQLite's parameter limit
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, docs in self._db.execute(f"SELECT key, documents FROM simulated WHERE key IN ({marks})", chunk):
                    found[key] = [tuple(d) for d in json.loads(docs)]
            self.hits += sum(1 for key in keys if key in found)
            self.misses += sum(1 for key in keys if key not in found)
        return found

    def put_many(self, rows: Sequence[tuple[str, dict[str, Any], str, list[tuple[str, str]]]]) -> None:
        """rows: (key, key fields {query, mode, model, include_answer, k}, raw output, documents)."""
        now = time.time()
        values = [
            (key, f["query"], f["mode"], f["model"], int(f["include_answer"]), f["k"], raw, json.dumps(docs), now)
            for key, f, raw, docs in rows
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO simulated VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM simulated").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- the engine ------------------------------------------------------------------------------------
class SimulatedEngine(SearchEngine):
    """Search results written by an LLM, useful or noisy per `QueryContext.noisy`.

    Args:
        generator: a `Generator` or a backend name ("transformers", "openai", "vllm");
            generator_kwargs build it (model_path / base_url, model, ...).
        include_answer: put the question and gold answer in the prompt (ZeroSearch
            training); False for evaluation.
        cache: True for `<cache_dir>/simulated.sqlite`, a path, a `SimulationCache`,
            or False for none.
        max_new_tokens: generation budget; None is 60 tokens per document + 20.
        temperature, top_p, seed: sampling (greedy by default).
        prefill: text the reply is made to start with ("Doc 1:"), so that small
            models keep ZeroSearch's output format; None to disable.
        drop_leaking_noisy: drop noisy documents that contain a gold answer (an
            untuned simulator often leaks it, since the prompt contains it).
        on_error: "observe" turns a failed generation into an empty `SearchFailure`
            result whose error the observation shows (the episode goes on); "raise"
            raises the `LLMError`.
        max_words: words kept per document.
    """

    name = "simulated"

    def __init__(
        self,
        generator: str | Generator = "transformers",
        *,
        include_answer: bool = True,
        cache: bool | str | Path | SimulationCache = True,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = 0,
        prefill: str | None = "Doc 1:",
        drop_leaking_noisy: bool = True,
        on_error: str = "observe",
        max_words: int = 80,
        **generator_kwargs: Any,
    ) -> None:
        if on_error not in ("observe", "raise"):
            raise ValueError("on_error must be 'observe' or 'raise'")
        self.generator = make_generator(generator, **generator_kwargs)
        self.include_answer = include_answer
        if cache is True:
            from search_envs.data import cache_dir

            cache = cache_dir() / "simulated.sqlite"
        self.cache = None if cache is False or cache is None else (
            cache if isinstance(cache, SimulationCache) else SimulationCache(cache)
        )
        self.max_new_tokens = max_new_tokens
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.prefill = prefill or None
        self.drop_leaking_noisy = drop_leaking_noisy
        self.on_error = on_error
        self.max_words = max_words
        self.stats = {"generated": 0, "cache_hits": 0, "errors": 0, "dropped_leaking": 0}
        self._announced = False  # the first generation says what it is doing (it can take a minute)

    # -- prompt and key ------------------------------------------------------------------
    def messages(self, query: str, context: QueryContext, k: int) -> list[Message]:
        mode = "noisy" if context.noisy else "useful"
        if self.include_answer:
            prompt = simulation_prompt(query, mode, k, context.question, context.answers)
        else:
            prompt = simulation_prompt(query, mode, k)
        conversation: list[Message] = [{"role": "system", "content": ""}, {"role": "user", "content": prompt}]
        if self.prefill:
            conversation.append({"role": "assistant", "content": self.prefill})
        return conversation

    def key_fields(self, query: str, context: QueryContext, k: int) -> dict[str, Any]:
        return {
            "query": query,
            "mode": "noisy" if context.noisy else "useful",
            "model": self.generator.name,
            "include_answer": self.include_answer,
            "k": k,
        }

    def cache_key(self, query: str, context: QueryContext, k: int) -> str:
        """(query, mode, model, include_answer, k), plus what else shapes the output:
        the question and answers when they are in the prompt, and the generation setup."""
        fields = self.key_fields(query, context, k)
        extra = {
            "question": context.question if self.include_answer else "",
            "answers": list(context.answers) if self.include_answer else [],
            "generation": [PROMPT_VERSION, self.prefill, self._max_new_tokens(k), self.temperature, self.top_p,
                           self.seed, self.max_words],
        }
        blob = json.dumps([fields, extra], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _max_new_tokens(self, k: int) -> int:
        return self.max_new_tokens or 60 * k + 20

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: Sequence[str], k: int, contexts: Sequence[QueryContext] | None = None) -> list[list[Document]]:
        if contexts is not None and len(contexts) != len(queries):
            raise ValueError(f"got {len(contexts)} contexts for {len(queries)} queries")
        if k < 1:
            return [[] for _ in queries]
        jobs: list[tuple[int, str, QueryContext, str]] = []
        for i, raw in enumerate(queries):
            query = " ".join(str(raw or "").split())
            if query:
                context = contexts[i] if contexts is not None else QueryContext()
                jobs.append((i, query, context, self.cache_key(query, context, k)))
        keys = [key for *_, key in jobs]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        self.stats["cache_hits"] += sum(1 for key in keys if key in found)
        todo = {key: (query, context) for _, query, context, key in jobs if key not in found}
        failures = self._generate(todo, k, found)

        results: list[list[Document]] = [[] for _ in queries]
        for i, query, context, key in jobs:
            if key in failures:
                results[i] = SearchFailure(f"the simulated search engine failed: {str(failures[key])[:300]}")
            else:
                results[i] = self._documents(query, context, key, found[key])
        return results

    def _generate(self, todo: dict[str, tuple[str, QueryContext]], k: int, found: dict) -> dict[str, LLMError]:
        """Generate the missing keys into `found` (and the cache); return the failures."""
        if not todo:
            return {}
        keys = list(todo)
        if not self._announced:
            self._announced = True
            print(f"SimSearch: the simulator LLM ({self.generator.name}) writes the results; its first search "
                  "loads the model and generates, which can take a minute on CPU (later ones reuse it, "
                  "and repeated queries come from the cache)", file=sys.stderr, flush=True)
        try:
            outputs = self.generator.complete(
                [self.messages(q, c, k) for q, c in todo.values()],
                max_new_tokens=self._max_new_tokens(k),
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self.seed,
                return_exceptions=True,
            )
        except Exception as exc:  # a local backend fails as a whole (out of memory, bad model)
            if self.on_error == "raise":
                raise
            outputs = [LLMError(f"{type(exc).__name__}: {exc}")] * len(keys)
        failures: dict[str, LLMError] = {}
        rows = []
        for key, out in zip(keys, outputs):
            if isinstance(out, BaseException):
                self.stats["errors"] += 1
                if self.on_error == "raise":
                    raise out
                failures[key] = out
                continue
            raw = (self.prefill or "") + out.text
            found[key] = parse_documents(raw, k, self.max_words)
            rows.append((key, self.key_fields(*todo[key], k), raw, found[key]))
        self.stats["generated"] += len(rows)
        if self.cache is not None and rows:
            self.cache.put_many(rows)
        return failures

    def _documents(self, query: str, context: QueryContext, key: str, docs: list[tuple[str, str]]) -> list[Document]:
        out = []
        for rank, (title, text) in enumerate(docs):
            if context.noisy and self.drop_leaking_noisy and substring_match(f"{title} {text}", context.answers):
                self.stats["dropped_leaking"] += 1
                continue
            out.append(Document(id=f"sim-{key[:12]}-{rank}", title=title or query[:100], text=text, score=1.0 / (rank + 1)))
        return out

    def close(self) -> None:
        self.generator.close()
        if self.cache is not None:
            self.cache.close()
            self.cache = None

