"""Out-of-core BM25 index build: memory bounded by a setting, not by the corpus.

1. The passage store is read in chunks of rows; each chunk is analysed (in worker
   processes, one per core) into postings (term, passage, tf) plus passage lengths.
2. The main process maps each chunk's terms to global ids and spills its postings,
   sorted by term, to a scratch folder inside the index being built.
3. Merge: the vocabulary is cut into ranges whose postings fit the memory budget;
   each range is gathered from every spilled chunk (a contiguous slice of each),
   encoded (`search_envs.postings`) and appended to postings.bin. Scores are not
   stored: the query kernel computes them from tf and the passage's length.

The build runs inside the index's temporary directory (`search_envs.index`), so an
interrupted build leaves nothing that loads; the scratch folder is removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numba
import numpy as np
from tqdm.auto import tqdm

from search_envs import postings
from search_envs.analysis import get_analyzer
from search_envs.corpus import PassageStore
from search_envs.workers import cores, ordered_map, spawn_pool

MIN_PARALLEL_ROWS = 20_000  # below this, worker start-up costs more than it saves


# ---------------------------------------------------------------- Lucene's one-byte document length


def _long_to_int4(i: np.ndarray) -> np.ndarray:
    """SmallFloat.longToInt4: a 4-bit-mantissa float of a non-negative integer."""
    i = i.astype(np.int64)
    bits = np.frexp(i.astype(np.float64))[1].astype(np.int64)  # = bit length (exact below 2**53)
    shift = np.maximum(bits - 4, 0)
    encoded = ((i >> shift) & 0x07) | ((shift + 1) << 3)
    return np.where(bits < 4, i, encoded)


def _int4_to_long(i: np.ndarray) -> np.ndarray:
    i = i.astype(np.int64)
    bits = i & 0x07
    shift = (i >> 3) - 1
    return np.where(shift == -1, bits, (bits | 0x08) << np.maximum(shift, 0))


_MAX_INT4 = int(_long_to_int4(np.array([2**31 - 1]))[0])
_NUM_FREE_VALUES = 255 - _MAX_INT4  # 24: lengths below this are exact


def int_to_byte4(lengths: np.ndarray) -> np.ndarray:
    """SmallFloat.intToByte4, how Lucene's BM25Similarity stores a document's length."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.where(
        lengths < _NUM_FREE_VALUES, lengths, _NUM_FREE_VALUES + _long_to_int4(np.maximum(lengths - _NUM_FREE_VALUES, 0))
    ).astype(np.uint8)


def byte4_to_int(codes: np.ndarray) -> np.ndarray:
    """SmallFloat.byte4ToInt: the length Lucene scores a document with."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes < _NUM_FREE_VALUES, codes, _NUM_FREE_VALUES + _int4_to_long(np.maximum(codes - _NUM_FREE_VALUES, 0)))


def norm_table(params: dict[str, Any], avgdl: float) -> np.ndarray:
    """Lucene's BM25Scorer cache: 1 / (k1 * ((1 - b) + b * length / avgdl)) for each of
    the 256 one-byte lengths, computed in float32 as Lucene computes it."""
    k1, b = np.float32(params["k1"]), np.float32(params["b"])
    table = byte4_to_int(np.arange(256)).astype(np.float32)
    return np.float32(1) / (k1 * ((np.float32(1) - b) + b * table / np.float32(avgdl)))


def idf(df: np.ndarray, docs: int) -> np.ndarray:
    """ln(1 + (N - df + 0.5) / (df + 0.5)) in float64 (Lucene rounds it to float32)."""
    df = np.asarray(df, dtype=np.float64)
    return np.log(1.0 + (docs - df + 0.5) / (df + 0.5))


# ---------------------------------------------------------------- phase 1: analyse chunks (workers)

_worker: dict[str, Any] = {}


def _analyze_rows(job: tuple[str, str, int, int]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Postings of store rows [start, stop): (terms, term ids, local rows, tf, lengths, passage ids).

    Terms are numbered by first occurrence in the chunk, postings listed passage by
    passage: the result depends on the chunk alone, not on what the worker did before."""
    directory, analyzer_name, start, stop = job
    if _worker.get("key") != (directory, analyzer_name):
        if "store" in _worker:
            _worker["store"].close()
        _worker.update(key=(directory, analyzer_name), store=PassageStore(directory), analyzer=get_analyzer(analyzer_name))
    analyzer, store = _worker["analyzer"], _worker["store"]
    passages = store.get_many(range(start, stop))
    store.drop_pages()
    ids, lengths = analyzer.term_ids([f"{p.title}\n{p.text}" for p in passages])
    used, local, rows, tf = _term_counts(ids, lengths, len(analyzer.term_list))
    terms = [analyzer.term_list[i] for i in used]
    return terms, local, rows, tf, lengths.astype(np.int32), np.array([p.id.encode("utf-8") for p in passages])


@numba.njit(nogil=True, cache=True)
def _term_counts(ids: np.ndarray, lengths: np.ndarray, n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(used, term, row, tf): the distinct terms of the texts (analyzer ids, in order of
    first occurrence) and, text by text, each distinct term's index in `used` and count."""
    local_of = np.full(n_terms, -1, dtype=np.int64)
    count = np.zeros(n_terms, dtype=np.int32)
    seen = np.empty(max(1, lengths.max()) if len(lengths) else 1, dtype=np.int64)
    used = np.empty(len(ids), dtype=np.int64)
    terms = np.empty(len(ids), dtype=np.int32)
    rows = np.empty(len(ids), dtype=np.int32)
    tf = np.empty(len(ids), dtype=np.int32)
    n_used = m = pos = 0
    for r in range(len(lengths)):
        k = 0
        for j in range(pos, pos + lengths[r]):
            t = ids[j]
            if count[t] == 0:
                seen[k] = t
                k += 1
                if local_of[t] < 0:
                    local_of[t] = n_used
                    used[n_used] = t
                    n_used += 1
            count[t] += 1
        for i in range(k):
            t = seen[i]
            terms[m], rows[m], tf[m] = local_of[t], r, count[t]
            count[t] = 0
            m += 1
        pos += lengths[r]
    return used[:n_used], terms[:m], rows[:m], tf[:m]


@numba.njit(nogil=True, cache=True)
def _counting_sort(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, counts): a stable sort of small integer keys in O(n + n_keys)."""
    counts = np.zeros(n_keys, dtype=np.int64)
    for k in keys:
        counts[k] += 1
    starts = np.empty(n_keys, dtype=np.int64)
    total = 0
    for i in range(n_keys):
        starts[i] = total
        total += counts[i]
    order = np.empty(len(keys), dtype=np.int64)
    for i in range(len(keys)):
        order[starts[keys[i]]] = i
        starts[keys[i]] += 1
    return order, counts


# ---------------------------------------------------------------- the build


def chunk_rows(memory_mb: int) -> int:
    """Passages per chunk: ~24 KB of working memory per passage across workers and merge."""
    return int(min(200_000, max(1_000, memory_mb * 1024 // 24)))


def build_bm25(
    store_dir: Path, out: Path, params: dict[str, Any], workers: int = 0, memory_mb: int = 1024, show_progress: bool = True
) -> dict[str, Any]:
    """Build the postings of the store in `store_dir` into `out`; returns build stats.

    Files: vocab.json (term -> id), df.npy and offsets.npy (per term),
    postings.bin (`search_envs.postings` codes), block_offset.npy, block_last.npy and
    block_max.npy (per skip block), tie_rank.npy and, per passage, norms.npy (Lucene's one-byte
    length) or lengths.npy (exact lengths, the bm25s scheme).
    """
    store = PassageStore(store_dir)
    n = len(store)
    store.close()
    out.mkdir(parents=True, exist_ok=True)
    spill = out.parent / (out.name + "-spill")
    spill.mkdir(exist_ok=True)
    try:
        vocab, df, lengths, chunks, ids = _spill_chunks(store_dir, n, params, spill, workers, memory_mb, show_progress)
        docs_with_terms = int((lengths > 0).sum())
        stats = {"docs_with_terms": docs_with_terms, "avgdl": float(lengths.sum()) / max(1, docs_with_terms)}
        if params["lengths"] == "exact":
            stats = {"docs_with_terms": n, "avgdl": float(lengths.sum()) / max(1, n)}
            np.save(out / "lengths.npy", lengths)
            norms, table = np.zeros(n, dtype=np.uint8), np.zeros(1, dtype=np.float32)  # no bounds: bm25s never prunes
        else:
            norms, table = int_to_byte4(lengths), norm_table(params, stats["avgdl"])
            np.save(out / "norms.npy", norms)
        _merge(out, chunks, df, norms, table, memory_mb, show_progress)
        np.save(out / "df.npy", df.astype(np.int32))
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        rank = np.empty(n, dtype=np.uint32)
        rank[np.argsort(ids, kind="stable")] = np.arange(n, dtype=np.uint32)
        np.save(out / "tie_rank.npy", rank)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return {"terms": len(vocab), "postings": int(df.sum()), "postings_format": postings.FORMAT, **stats}


def _spill_chunks(
    store_dir: Path, n: int, params: dict[str, Any], spill: Path, workers: int, memory_mb: int, show_progress: bool
) -> tuple[dict[str, int], np.ndarray, np.ndarray, list[dict[str, Any]], np.ndarray]:
    size = chunk_rows(memory_mb)
    jobs = [(str(store_dir), params["analyzer"], a, min(a + size, n)) for a in range(0, n, size)]
    workers = workers if workers > 0 else min(2, cores())
    vocab: dict[str, int] = {}
    df = np.zeros(1024, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int32)
    ids: list[np.ndarray] = []
    chunks: list[dict[str, Any]] = []
    results = _analysed(jobs, workers if n >= MIN_PARALLEL_ROWS else 1)
    bar = tqdm(total=n, desc="bm25: analyse", unit="passage", disable=not show_progress)
    try:
        for c, ((start, stop), (terms, tids, rows, tf, lens, pids)) in enumerate(zip(((j[2], j[3]) for j in jobs), results)):
            gid = np.fromiter((vocab.setdefault(t, len(vocab)) for t in terms), dtype=np.int64, count=len(terms))
            by_gid = np.argsort(gid)  # the chunk's terms in global order
            rank = np.empty(len(gid), dtype=np.int64)
            rank[by_gid] = np.arange(len(gid))
            order, counts = _counting_sort(rank[tids], len(gid))  # stable: passages stay in order within a term
            rows, tf = rows[order] + start, tf[order]
            uterms, first = gid[by_gid], np.cumsum(counts) - counts
            if len(vocab) > len(df):
                df = np.concatenate([df, np.zeros(max(len(vocab), 2 * len(df)) - len(df), dtype=np.int64)])
            df[uterms] += counts
            lengths[start:stop] = lens
            ids.append(pids)
            paths = {}
            for name, arr in (("terms", uterms.astype(np.int32)), ("first", first.astype(np.int64)), ("rows", rows.astype(np.int32)), ("tf", tf)):
                paths[name] = spill / f"{c:06d}.{name}.npy"
                np.save(paths[name], arr)
            chunks.append(paths)
            bar.update(stop - start)
    finally:
        bar.close()
        results.close()
    width = max((a.dtype.itemsize for a in ids), default=1)
    all_ids = np.concatenate([a.astype(f"S{width}") for a in ids]) if ids else np.zeros(0, dtype="S1")
    return vocab, df[: len(vocab)], lengths, chunks, all_ids


def _analysed(jobs: list[tuple[str, str, int, int]], workers: int) -> Iterator[tuple]:
    """`_analyze_rows` of each job, in order, on `workers` processes with at most
    workers + 1 chunks in flight (in this process if the workers cannot start)."""
    if workers <= 1:
        yield from map(_analyze_rows, jobs)
        return
    with spawn_pool(workers) as pool:  # spawned chunks are large enough to amortise the start
        yield from ordered_map(_analyze_rows, jobs, pool, workers + 1,
                               "bm25 build: worker processes failed ({exc}); analysing in this process")


class _NpyWriter:
    """Append to a 1-d .npy file of known length, sequentially (no memory map)."""

    def __init__(self, path: Path, dtype: Any, length: int):
        self.f = open(path, "wb")
        np.lib.format.write_array_header_2_0(self.f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (length,)})
        self.dtype, self.left = np.dtype(dtype), length

    def write(self, arr: np.ndarray) -> None:
        self.left -= len(arr)
        self.f.write(np.ascontiguousarray(arr, dtype=self.dtype).tobytes())

    def close(self, check: bool = True) -> None:
        self.f.close()
        if check and self.left != 0:
            raise RuntimeError(f"{self.f.name}: {self.left} values short")


def _read_npy(path: Path, lo: int, hi: int | None) -> np.ndarray:
    """Elements [lo, hi) of a 1-d .npy file (hi None: to the end), read into memory."""
    with open(path, "rb") as f:
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, _, dtype = read_header[np.lib.format.read_magic(f)](f)
        hi = shape[0] if hi is None else hi
        f.seek(lo * dtype.itemsize, os.SEEK_CUR)
        return np.fromfile(f, dtype=dtype, count=hi - lo)


def _merge(
    out: Path, chunks: list[dict[str, Any]], df: np.ndarray, norms: np.ndarray, table: np.ndarray, memory_mb: int,
    show_progress: bool,
) -> None:
    """Gather each range of terms from every spilled chunk, encode its postings and
    append them to postings.bin; writes the per-term and per-block arrays."""
    indptr = np.zeros(len(df) + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    total = int(indptr[-1])
    per_range = max(1, memory_mb * 2**20 // 48)  # postings merged at a time: ~48 bytes each in flight
    bounds = [0]
    while bounds[-1] < len(df):
        nxt = int(np.searchsorted(indptr, indptr[bounds[-1]] + per_range, side="right")) - 1
        bounds.append(min(len(df), max(nxt, bounds[-1] + 1)))
    offsets = np.zeros(len(df) + 1, dtype=np.int64)
    first_block = np.concatenate([[0], np.cumsum(postings.n_blocks(df))])
    n_blocks = int(first_block[-1])
    block_files = [_NpyWriter(out / f"block_{name}.npy", dtype, n_blocks)
                   for name, dtype in (("offset", np.int64), ("last", np.int32), ("max", np.float32))]
    spilled = [{"terms": np.load(c["terms"]), "first": np.load(c["first"]), "rows": c["rows"], "tf": c["tf"]} for c in chunks]
    bar = tqdm(total=total, desc="bm25: merge", unit="posting", unit_scale=True, disable=not show_progress)
    try:
        with open(out / "postings.bin", "wb") as f:
            for t0, t1 in zip(bounds[:-1], bounds[1:]):
                terms, rows, tf = [], [], []
                for c in spilled:
                    a, z = np.searchsorted(c["terms"], [t0, t1])
                    if a == z:
                        continue
                    lo = int(c["first"][a])
                    hi = int(c["first"][z]) if z < len(c["first"]) else None
                    rows.append(_read_npy(c["rows"], lo, hi))  # read, not memory-mapped: pages are not kept
                    tf.append(_read_npy(c["tf"], lo, hi))
                    counts = np.diff(np.append(c["first"][a:z], lo + len(rows[-1])))
                    terms.append(np.repeat(c["terms"][a:z] - t0, counts))
                if not terms:
                    offsets[t0 + 1 : t1 + 1] = offsets[t0]
                    continue
                order, counts = _counting_sort(np.concatenate(terms), t1 - t0)  # stable: rows stay sorted
                row, freq = np.concatenate(rows)[order], np.concatenate(tf)[order]
                del terms, rows, tf, order
                sizes = postings.encoded_sizes(counts, row, freq)
                buf = np.empty(int(sizes.sum()), dtype=np.uint8)
                blocks = [np.empty(int(first_block[t1] - first_block[t0]), dtype=w.dtype) for w in block_files]
                postings.encode(counts, row, freq, buf, offsets[t0], *blocks, norms, table)
                f.write(buf.tobytes())
                for writer, values in zip(block_files, blocks):
                    writer.write(values)
                offsets[t0 + 1 : t1 + 1] = offsets[t0] + np.cumsum(sizes)
                bar.update(len(row))
    finally:
        bar.close()
        for writer in block_files:
            writer.close(check=False)
    for writer in block_files:
        writer.close()
    np.save(out / "offsets.npy", offsets)
