"""Corpora in the papers' formats, ~100-word chunking, and an on-disk passage store.

Supported jsonl records (detected per line, so mixed files work):

- FlashRAG / Search-R1: `{"id", "contents": "\\"Title\\"\\ntext"}`
- plain: `{"id", "title", "text"}`
- KILT pages (R1-Searcher): `{"wikipedia_id"?, "wikipedia_title", "text": [paragraph, ...]}`

Texts longer than a passage are split into ~`words`-word chunks; a passage id is the
record id when the record is one passage, `<id>-<chunk>` otherwise.

The passage store (`search_envs.store`, re-exported here) keeps passage text on disk,
compressed, so a server never holds the corpus as Python objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO


from search_envs.data import Article, cache_dir, embedded_articles
from search_envs.store import STORE_OFFSETS, STORE_TEXT, Passage, PassageStore, split_contents, write_store

__all__ = ["Passage", "PassageStore", "write_store", "STORE_OFFSETS", "STORE_TEXT", "iter_passages", "parse_record"]

PASSAGE_WORDS = 100
EMBEDDED_NAME = "embedded"
EMBEDDED_FILE = "embedded_wiki_leads.jsonl"


class CorpusFormatError(ValueError):
    """A corpus line that is not valid JSON or not in a supported format (names file:line)."""


def chunk_words(text: str, words: int = PASSAGE_WORDS) -> list[str]:
    """Split `text` into nearly equal chunks of about `words` words (67-150 for 100).

    Equal-size chunks avoid a tiny trailing passage that would rank on noise.
    """
    if text and text.isprintable() and "  " not in text and text[0] != " " and text[-1] != " ":
        # single-spaced already (the only whitespace a printable text can hold is " "), as
        # Wikipedia passages are: a short one is its own chunk, with no split and join
        if max(1, round((text.count(" ") + 1) / words)) == 1:
            return [text]
    return _chunks(text.split(), words)


def _chunks(tokens: list[str], words: int) -> list[str]:
    """The chunks of a split text. Bounds are `np.linspace(0, n, k + 1).round()` (what
    this computed first, so stores stay byte-identical) done in plain floats: i * (n / k),
    rounded half to even, the last bound exactly n."""
    if not tokens:
        return []
    n = max(1, round(len(tokens) / words))
    if n == 1:
        return [" ".join(tokens)]
    step = len(tokens) / n
    bounds = [round(i * step) for i in range(n)] + [len(tokens)]
    return [" ".join(tokens[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _kilt_text(rec: dict[str, Any]) -> str:
    """Join KILT paragraphs, dropping `Section::::` headings, bullet markers and the title paragraph."""
    paragraphs = [p.strip() for p in rec["text"]]
    if paragraphs and paragraphs[0] == rec["wikipedia_title"].strip():
        paragraphs = paragraphs[1:]
    kept = [p.removeprefix("BULLET::::").strip() for p in paragraphs if p and not p.startswith("Section::::")]
    return " ".join(kept)


def parse_record(rec: Any, fallback_id: str, words: int = PASSAGE_WORDS) -> list[Passage]:
    """The passages of one corpus record; raises ValueError for an unknown layout."""
    return passages_of(*record_chunks(rec, fallback_id, words))


def passages_of(doc_id: str, title: str, chunks: list[str]) -> list[Passage]:
    """A record's passages: one chunk keeps the record id, several get `<id>-<chunk>`."""
    if len(chunks) == 1:
        return [Passage(doc_id, title, chunks[0])]
    return [Passage(f"{doc_id}-{i}", title, chunk) for i, chunk in enumerate(chunks)]


def record_chunks(rec: Any, fallback_id: str, words: int = PASSAGE_WORDS) -> tuple[str, str, list[str]]:
    """(id, title, text chunks) of one corpus record (`passages_of` makes them passages);
    raises ValueError for an unknown layout."""
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    if "contents" in rec and isinstance(rec["contents"], str):
        doc_id = str(rec.get("id", fallback_id))
        title, text = split_contents(rec["contents"])
    elif isinstance(rec.get("text"), str) and "title" in rec:
        doc_id = str(rec.get("id", fallback_id))
        title, text = str(rec["title"]), rec["text"]
    elif isinstance(rec.get("wikipedia_title"), str) and isinstance(rec.get("text"), list):
        doc_id = str(rec.get("wikipedia_id") or rec["wikipedia_title"])
        title, text = rec["wikipedia_title"], _kilt_text(rec)
    else:
        raise ValueError(
            "unknown record layout (keys: "
            + ", ".join(sorted(map(str, rec)))
            + '); expected {"id","contents"}, {"id","title","text"} or KILT {"wikipedia_title","text":[...]}'
        )
    return doc_id, title, chunk_words(text, words)


@dataclass
class CorpusStats:
    records: int = 0
    passages: int = 0
    bad_lines: int = 0
    sha256: str = ""  # of the corpus file, when a store build read all of it


BLOCK_BYTES = 4 << 20  # corpus bytes read (and handed to a store-build worker) at a time


def read_blocks(f: BinaryIO, digest: Any = None) -> Iterator[tuple[bytes, int]]:
    """(block, number of its first line) of a binary corpus file, in blocks of whole lines of
    about `BLOCK_BYTES`; `digest` (a hashlib object) is fed every byte on the way."""
    lineno, pieces = 1, []
    while data := f.read(BLOCK_BYTES):
        if digest is not None:
            digest.update(data)
        cut = data.rfind(b"\n") + 1
        if not cut:  # a line longer than a block
            pieces.append(data)
            continue
        pieces.append(data[:cut])
        block = b"".join(pieces)
        pieces = [data[cut:]]
        yield block, lineno
        lineno += block_lines(block)
    if tail := b"".join(pieces):
        yield tail, lineno


def block_lines(block: bytes) -> int:
    """Line ends in a block: \\n, \\r\\n or a lone \\r, as text-mode reading counts them."""
    n = block.count(b"\n")
    return n + block.count(b"\r") - block.count(b"\r\n") if b"\r" in block else n


def parsed_lines(block: bytes, lineno: int, words: int = PASSAGE_WORDS) -> Iterator[tuple[int, Any]]:
    """(line number, `record_chunks` of the line, or the ValueError that made it a bad line)
    for each non-blank line of a block. Lines end as in text mode (\\n, \\r\\n or \\r); a
    line that is not UTF-8 is a bad line."""
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        lines: list[Any] = block.decode().split("\n")
    except UnicodeDecodeError:
        lines = [_decoded(line) for line in block.split(b"\n")]
    last = len(lines) - 1 if lines[-1] else None  # an unterminated last line, or none
    if last is None:
        lines.pop()
    for i, (lineno, line) in enumerate(enumerate(lines, lineno)):
        if isinstance(line, str):
            if not line or line.isspace():
                continue
            try:
                parts = record_chunks(_loads(line, i != last), str(lineno - 1), words)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                parts = exc
            yield lineno, parts
        else:
            yield lineno, line


_scan = json.JSONDecoder().scan_once  # what json.loads runs, without its per-call checks


def _loads(line: str, terminated: bool) -> Any:
    """json.loads of a corpus line (as text-mode reading gives it: with its line end if
    `terminated`, so errors read as before), twice as fast for a line that is one object."""
    if line[0] == "{" and line[-1] == "}":
        try:
            obj, end = _scan(line, 0)
            if end == len(line):
                return obj
        except (StopIteration, ValueError):
            pass
    return json.loads(line + "\n" if terminated else line)


def _decoded(line: bytes) -> str | UnicodeDecodeError:
    try:
        return line.decode()
    except UnicodeDecodeError as exc:
        return exc


def bad_line(path: Path, lineno: int, exc: ValueError, skip_bad: bool, stats: CorpusStats) -> None:
    """Count a bad line (`skip_bad`) or raise the CorpusFormatError naming it."""
    if not skip_bad:
        raise CorpusFormatError(f"{path}:{lineno}: {exc} (pass skip_bad / --skip-bad to skip bad lines)") from exc
    stats.bad_lines += 1


def iter_passages(
    path: str | Path,
    words: int = PASSAGE_WORDS,
    skip_bad: bool = False,
    stats: CorpusStats | None = None,
) -> Iterator[Passage]:
    """Stream the passages of a jsonl corpus.

    A bad line raises CorpusFormatError naming file:line, or with `skip_bad` is
    skipped and counted in `stats.bad_lines`.
    """
    stats = stats if stats is not None else CorpusStats()
    path = Path(path)
    with open(path, "rb") as f:
        for block, first in read_blocks(f):
            for lineno, parts in parsed_lines(block, first, words):
                if isinstance(parts, ValueError):
                    bad_line(path, lineno, parts, skip_bad, stats)
                    continue
                passages = passages_of(*parts)
                stats.records += 1
                stats.passages += len(passages)
                yield from passages


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_flashrag_corpus(articles: Iterable[Article], path: str | Path) -> Path:
    """Write articles as a FlashRAG jsonl (`{"id","contents"}`, ids 0..n-1), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for i, a in enumerate(articles):
                f.write(json.dumps({"id": str(i), "contents": f'"{a.title}"\n{a.text}'}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def embedded_corpus_path() -> Path:
    """The embedded Wikipedia lead sections as a FlashRAG jsonl in the cache (written once)."""
    path = cache_dir() / "corpora" / EMBEDDED_FILE
    if not path.is_file():
        write_flashrag_corpus(embedded_articles(), path)
    return path


def embedded_subset_path(n: int, include: Sequence[str] = ()) -> Path:
    """A FlashRAG jsonl of `n` embedded articles: the titles in `include` first, then
    evenly spaced others. For tests and quick experiments where encoding the whole
    embedded corpus on a CPU would take minutes."""
    articles = embedded_articles()
    wanted = set(include)
    chosen = [a for a in articles if a.title in wanted]
    if len(chosen) != len(wanted):
        missing = wanted - {a.title for a in chosen}
        raise ValueError(f"not in the embedded corpus: {', '.join(sorted(missing))}")
    rest = [a for a in articles if a.title not in wanted]
    step = max(1, len(rest) // max(1, n - len(chosen)))
    chosen += rest[::step][: max(0, n - len(chosen))]
    key = hashlib.sha256("\n".join(a.title for a in chosen).encode()).hexdigest()[:8]
    path = cache_dir() / "corpora" / f"embedded_{len(chosen)}_{key}.jsonl"
    return path if path.is_file() else write_flashrag_corpus(chosen, path)


def resolve_corpus(corpus: str | Path | None) -> Path:
    """A corpus argument as a file path: None or "embedded" means the embedded corpus."""
    if corpus is None or str(corpus) == EMBEDDED_NAME:
        return embedded_corpus_path()
    path = Path(corpus).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    return path
