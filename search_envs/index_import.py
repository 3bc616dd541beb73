"""Adopt a Search-R1 / FlashRAG faiss index and its corpus jsonl as a dense index directory,
without copying or re-encoding anything.

Search-R1's `index_builder.py` (FlashRAG's) writes `<method>_<faiss type>.index` (e.g.
`e5_Flat.index`, an `IndexFlatIP` of normalised e5-base-v2 vectors of `"passage: " +
contents`) whose row i is line i of the corpus (`{"id", "contents": '"Title"\\ntext'}`).
The imported directory holds:

    manifest.json   kind "dense", model and prefixes, `store: "corpus_file"`, and under
                    `references` the two original files (absolute path, bytes, mtime)
    faiss.index     a symlink to the original index (64 GB for wiki-18: never copied)
    passages.jsonl  a symlink to the original corpus (the passage store's text file)
    offsets.npy     the byte offset of every corpus line (8 bytes a passage), so a
                    result row is read straight from the original file

`check_index` (so every load) checks that the referenced files still have the recorded
sizes and mtimes, and hashes `offsets.npy` as usual; the passage store reads the linked
corpus in its `corpus_file` layout (`search_envs.store`); the dense engine encodes
queries with the recorded model and prefixes (e5: "query: ").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from search_envs.corpus import STORE_OFFSETS, STORE_TEXT, file_sha256
from search_envs.index import FORMAT_VERSION, MANIFEST, atomic_dir
from search_envs.store import CORPUS_FILE

CORPUS_LINK = STORE_TEXT  # "passages.jsonl": the store reads the linked corpus
INDEX_LINK = "faiss.index"  # = engines.dense.INDEX_FILE
SEARCH_R1_MODEL = "intfloat/e5-base-v2"
SCAN_BLOCK = 64 * 1024 * 1024


def line_offsets(path: Path, progress: bool = True) -> np.ndarray:
    """Start offsets of the non-empty lines of a file, plus its end (n + 1 int64 values);
    scanned in 64 MiB blocks with numpy, so 21M lines take about as long as reading the file."""
    from tqdm.auto import tqdm

    size = path.stat().st_size
    starts = [np.zeros(1, dtype=np.int64)]
    with open(path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=f"indexing lines of {path.name}",
                                     disable=not progress) as bar:
        pos = 0
        while block := f.read(SCAN_BLOCK):
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10).astype(np.int64)
            starts.append(newlines + pos + 1)
            pos += len(block)
            bar.update(len(block))
    offsets = np.concatenate(starts)
    if offsets[-1] != size:  # no newline at the end of the last line
        offsets = np.append(offsets, size)
    lengths = np.diff(offsets)
    blank = lengths == 0
    short = np.flatnonzero((lengths > 0) & (lengths <= 2))  # maybe "\n" or "\r\n" alone
    if len(short):
        data = np.memmap(path, dtype=np.uint8, mode="r")
        blank[short] = [not bytes(data[offsets[i] : offsets[i + 1]]).strip() for i in short]
    if not blank.any():
        return offsets
    # a blank line joins the line before it (JSON ignores the trailing whitespace); rows stay contiguous
    kept = offsets[:-1][~blank]
    if len(kept):
        kept[0] = 0
    return np.append(kept, size)


def _reference(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime": int(st.st_mtime)}


def import_faiss_index(
    index_file: str | Path,
    corpus: str | Path,
    out: str | Path,
    model: str = SEARCH_R1_MODEL,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Make `out` a dense index directory over an existing faiss index and its corpus.

    `model` is the encoder the index was built with (Search-R1: intfloat/e5-base-v2);
    prefixes default to the model family's ("query: "/"passage: " for e5).
    """
    import faiss

    from search_envs.engines.dense import default_prefixes

    index_file, corpus, out = Path(index_file).expanduser(), Path(corpus).expanduser(), Path(out)
    for what, path in (("faiss index", index_file), ("corpus", corpus)):
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True / --force to replace it)")
    # Only the header is needed: IO_FLAG_MMAP_IFC maps a Flat index's vectors instead of reading
    # them (IO_FLAG_MMAP alone reads every vector into memory: measured on a 300k-vector index).
    try:
        index = faiss.read_index(str(index_file), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as exc:
        raise ValueError(f"{index_file} is not a faiss index faiss {faiss.__version__} can read ({str(exc)[-120:]})") from None
    ntotal, dim, metric = int(index.ntotal), int(index.d), int(index.metric_type)
    kind = type(faiss.downcast_index(index)).__name__
    del index
    offsets = line_offsets(corpus, progress)
    if len(offsets) - 1 != ntotal:
        raise ValueError(
            f"{index_file} holds {ntotal:,} vectors but {corpus} has {len(offsets) - 1:,} passages: "
            "they are not a matching pair (row i of the index must be line i of the corpus)"
        )
    default_q, default_p = default_prefixes(model)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        np.save(tmp / STORE_OFFSETS, offsets)
        os.symlink(index_file.resolve(), tmp / INDEX_LINK)
        os.symlink(corpus.resolve(), tmp / CORPUS_LINK)
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": "dense",
            "store": CORPUS_FILE,
            "corpus": str(corpus.resolve()),
            "passages": ntotal,
            "model": model,
            "dim": dim,
            "similarity": "inner product" if metric == faiss.METRIC_INNER_PRODUCT else f"faiss metric {metric}",
            "query_prefix": default_q if query_prefix is None else query_prefix,
            "passage_prefix": default_p if passage_prefix is None else passage_prefix,
            "faiss": kind,
            "faiss_params": {},
            "faiss_version": faiss.__version__,
            # a Flat index is served memory-mapped: its vectors live in the page cache, not the heap
            "mmap": kind in ("IndexFlatIP", "IndexFlatL2", "IndexFlat"),
            "imported_from": "search-r1/flashrag faiss index + corpus jsonl",
            "references": {INDEX_LINK: _reference(index_file), CORPUS_LINK: _reference(corpus)},
            # only our own files: the referenced ones are checked by size and mtime on load, not hashed (64 GB)
            "files": {STORE_OFFSETS: {"bytes": (tmp / STORE_OFFSETS).stat().st_size,
                                      "sha256": file_sha256(tmp / STORE_OFFSETS)}},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out
