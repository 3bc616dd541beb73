"""The passage store: passage text on disk, read by row number, never held as Python objects.

Three layouts. The two we write are told apart by the files present:

- `zstd` (default): `passages.zst`, one zstd frame per passage (with a checksum),
  compressed with a dictionary trained on the first passages (`passages.dict`), so
  each passage still decompresses on its own (~2 us); about 2.3x smaller than plain
  JSON lines on Wikipedia text.
- `jsonl`: `passages.jsonl`, one JSON array `[id, title, text]` per line (indexes
  built before the compressed store; `write_store(..., layout="jsonl")` writes it).

The third is read only and named by the index manifest (`store: "corpus_file"`):

- `corpus_file`: `passages.jsonl` is a link to an original corpus jsonl, one passage a
  line, in Search-R1/FlashRAG's `{"id", "contents": '"Title"\\ntext'}` form (or
  `{"id", "title", "text"}`); `search-envs index import` makes it, so a 14 GB corpus is
  read in place rather than copied.

All keep int64 byte offsets in `offsets.npy`, memory-mapped. Bytes that do not
decode (a file corrupted at the same size) raise `CorruptStoreError` naming the file.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zstandard

from search_envs.types import Document

STORE_TEXT = "passages.jsonl"
STORE_PACKED = "passages.zst"
STORE_DICT = "passages.dict"
STORE_OFFSETS = "offsets.npy"
LAYOUTS = ("zstd", "jsonl")  # the layouts write_store writes
CORPUS_FILE = "corpus_file"  # the read-only layout over an original corpus jsonl
DICT_SAMPLE = 20_000  # passages the dictionary is trained on (held in memory while training)
DICT_BYTES = 112_640  # zstd's customary dictionary size
ZSTD_LEVEL = 3


class Passage(NamedTuple):
    id: str
    title: str
    text: str


class CorruptStoreError(ValueError):
    """Passage bytes that do not decode: the store file was changed after the build."""


def split_contents(contents: str) -> tuple[str, str]:
    """(title, text) of a FlashRAG `contents` string: '"Title"\\ntext'."""
    title, _, text = contents.partition("\n")
    return title.strip().strip('"').strip(), text


def _corpus_fields(rec: object, row: int) -> list[str] | None:
    """[id, title, text] of line `row` of an original corpus (the `corpus_file` layout;
    no id: the row, as FlashRAG numbers them), None if it is not a corpus record."""
    if not isinstance(rec, dict):
        return None
    if isinstance(rec.get("contents"), str):
        return [str(rec.get("id", row)), *split_contents(rec["contents"])]
    if isinstance(rec.get("text"), str) and "title" in rec:
        return [str(rec.get("id", row)), str(rec["title"]), rec["text"]]
    return None


def _record(p: Passage) -> bytes:
    return json.dumps([p.id, p.title, p.text], ensure_ascii=False).encode("utf-8")


def write_store(passages: Iterable[Passage], directory: str | Path, layout: str = "zstd") -> int:
    """Write passages into `directory` as a store; returns the passage count."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown store layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    directory = Path(directory)
    offsets = [0]
    if layout == "jsonl":
        with open(directory / STORE_TEXT, "wb") as f:
            for p in passages:
                f.write(_record(p) + b"\n")
                offsets.append(f.tell())
    else:
        passages = iter(passages)
        head = [_record(p) for p in islice(passages, DICT_SAMPLE)]
        try:
            dictionary = zstandard.train_dictionary(DICT_BYTES, head).as_bytes() if len(head) >= 64 else b""
        except zstandard.ZstdError:  # too little or too uniform text to train on
            dictionary = b""
        (directory / STORE_DICT).write_bytes(dictionary)
        compressor = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, write_checksum=True,
            dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None,
        )
        with open(directory / STORE_PACKED, "wb") as f:
            for record in _chain(head, passages):
                f.write(compressor.compress(record))
                offsets.append(f.tell())
    np.save(directory / STORE_OFFSETS, np.asarray(offsets, dtype=np.int64))
    return len(offsets) - 1


def _chain(head: list[bytes], rest: Iterator[Passage]) -> Iterator[bytes]:
    yield from head
    head.clear()  # the sample is not kept while the rest streams through
    for p in rest:
        yield _record(p)


class PassageStore:
    """Read-only passages by row number, straight from the memory-mapped files.

    `layout`: what the index manifest's `store` names (`"corpus_file"` for an imported
    index); None or absent: `zstd` or `jsonl`, by the files present."""

    def __init__(self, directory: str | Path, layout: str | None = None):
        directory = Path(directory)
        if layout not in (None, *LAYOUTS, CORPUS_FILE):
            raise ValueError(f"{directory}: unknown passage store layout {layout!r}")
        self.offsets = np.load(directory / STORE_OFFSETS, mmap_mode="r")
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0:
            raise ValueError(f"{directory / STORE_OFFSETS}: not a passage offset array")
        self._corpus_file = layout == CORPUS_FILE
        self._packed = not self._corpus_file and layout != "jsonl" and (directory / STORE_PACKED).is_file()
        self.path = directory / (STORE_PACKED if self._packed else STORE_TEXT)
        self._decompress = None
        if self._packed:
            dictionary = (directory / STORE_DICT).read_bytes()
            dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None)
            self._decompress = dctx.decompress
        self._file = open(self.path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        if int(self.offsets[-1]) != size:
            self._file.close()
            raise ValueError(f"{self.path}: {size} bytes but the offsets end at {int(self.offsets[-1])} (truncated or replaced)")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Passage:
        if not -len(self) <= i < len(self):
            raise IndexError(f"passage {i} out of range (store has {len(self)})")
        return Passage(*self._fields([i])[0])

    def get_many(self, rows: Sequence[int]) -> list[Passage]:
        return [Passage(*fields) for fields in self._fields(rows)]

    def documents(self, rows: Sequence[int], scores: Sequence[float]) -> list[Document]:
        """Rows with their scores as Documents (the engines' common last step)."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1).tolist()
        return [Document(i, title, text, s) for (i, title, text), s in zip(self._fields(rows), scores)]

    def _fields(self, rows: Sequence[int]) -> list[list[str]]:
        """[id, title, text] of many rows with one JSON decode (the hot path of every search)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) == 0:
            return []
        if rows.min() < -len(self) or rows.max() >= len(self):
            raise IndexError(f"passage rows out of range (store has {len(self)})")
        rows %= len(self)
        starts, ends = self.offsets[rows].tolist(), self.offsets[rows + 1].tolist()
        try:
            if self._decompress is not None:
                decompress = self._decompress
                lines = b",".join([decompress(self._mm[a:b]) for a, b in zip(starts, ends)])
            else:
                lines = b",".join([self._mm[a:b].rstrip(b"\n") for a, b in zip(starts, ends)])
            fields = json.loads(b"[" + lines + b"]")
        except (zstandard.ZstdError, ValueError) as exc:
            raise CorruptStoreError(
                f"{self.path}: passage bytes do not decode ({type(exc).__name__}: {exc}); the store is corrupt, rebuild the index"
            ) from None
        if self._corpus_file:
            fields = [_corpus_fields(rec, row) for rec, row in zip(fields, rows.tolist())]
            if None in fields:
                row = rows[fields.index(None)]
                raise CorruptStoreError(f"{self.path}: line {row + 1} is not a corpus record {{id, contents}} or "
                                        "{id, title, text}; the corpus changed since the import, re-run `search-envs index import`")
        elif not all(isinstance(f, list) and len(f) == 3 for f in fields):
            raise CorruptStoreError(f"{self.path}: a passage record is not [id, title, text]; the store is corrupt, rebuild the index")
        return fields

    def iter_texts(self, batch: int = 4096) -> Iterator[list[Passage]]:
        """Passages in blocks, for encoders that must not hold the whole corpus."""
        for start in range(0, len(self), batch):
            yield self.get_many(range(start, min(start + batch, len(self))))

    def close(self) -> None:
        if isinstance(self._mm, mmap.mmap) and not self._mm.closed:
            self._mm.close()
        self._file.close()
