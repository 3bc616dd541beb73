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


_encode_str = json.encoder.encode_basestring  # json.dumps(s, ensure_ascii=False), without building an encoder per call


def encode_record(doc_id: str, title: str, text: str) -> bytes:
    """A passage record as stored: `json.dumps([id, title, text], ensure_ascii=False)` in UTF-8,
    written out so no JSONEncoder is built per passage (the same bytes, 3x faster)."""
    return f"[{_encode_str(doc_id)}, {_encode_str(title)}, {_encode_str(text)}]".encode()


def train_dictionary(head: Sequence[bytes]) -> bytes:
    """The zstd dictionary of a store, trained on its first `DICT_SAMPLE` records (b"": none)."""
    try:
        return zstandard.train_dictionary(DICT_BYTES, list(head)).as_bytes() if len(head) >= 64 else b""
    except zstandard.ZstdError:  # too little or too uniform text to train on
        return b""


def compressor(dictionary: bytes) -> zstandard.ZstdCompressor:
    """The compressor of a store's passages: one checksummed frame per passage."""
    return zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True,
        dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None,
    )


def compress_records(records: Sequence[bytes], cctx: zstandard.ZstdCompressor) -> tuple[bytes, np.ndarray]:
    """The frames of `records` back to back, and each frame's length."""
    frames = list(map(cctx.compress, records))
    return b"".join(frames), np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))


class StoreWriter:
    """Appends compressed passage frames to a `zstd` store and writes their offsets on close.

    Offsets are kept as one int64 array per append (8 bytes a passage, not a Python int
    each: 21M passages in 170 MB)."""

    def __init__(self, directory: str | Path, dictionary: bytes):
        self.directory = Path(directory)
        (self.directory / STORE_DICT).write_bytes(dictionary)
        self.compressor = compressor(dictionary)
        self._file = open(self.directory / STORE_PACKED, "wb")
        self._ends: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self._size = 0

    def write(self, frames: bytes, lengths: np.ndarray) -> None:
        """Append frames (back to back) whose lengths are `lengths`."""
        self._file.write(frames)
        self._ends.append(self._size + np.cumsum(lengths, dtype=np.int64))
        self._size += len(frames)

    def write_records(self, records: Sequence[bytes]) -> None:
        self.write(*compress_records(records, self.compressor))

    def close(self) -> int:
        """Finish the store; returns its passage count."""
        self._file.close()
        offsets = np.concatenate(self._ends)
        np.save(self.directory / STORE_OFFSETS, offsets)
        return len(offsets) - 1


def write_store(passages: Iterable[Passage], directory: str | Path, layout: str = "zstd") -> int:
    """Write passages into `directory` as a store; returns the passage count."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown store layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    directory = Path(directory)
    records = (encode_record(*p) for p in passages)
    if layout == "jsonl":
        offsets = [0]
        with open(directory / STORE_TEXT, "wb") as f:
            for record in records:
                f.write(record + b"\n")
                offsets.append(f.tell())
        np.save(directory / STORE_OFFSETS, np.asarray(offsets, dtype=np.int64))
        return len(offsets) - 1
    head = list(islice(records, DICT_SAMPLE))
    writer = StoreWriter(directory, train_dictionary(head))
    try:
        writer.write_records(head)
        del head  # the sample is not kept while the rest streams through
        while batch := list(islice(records, 4096)):
            writer.write_records(batch)
    finally:
        count = writer.close()
    return count


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
            self.drop_pages()

    def drop_pages(self) -> None:
        """Let go of the file pages read so far (they stay in the OS page cache): a
        process that streams the whole store, as an index build does, then holds
        only what it reads next, not the store."""
        if isinstance(self._mm, mmap.mmap) and not self._mm.closed and hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if isinstance(self._mm, mmap.mmap) and not self._mm.closed:
            self._mm.close()
        self._file.close()
