"""Compressed BM25 postings: encoded once at build time, scored per query in compiled code.

Each term's postings are its passages in row order, stored as variable-byte codes (7
bits a byte, high bit = more bytes): `(gap << 1) | (tf == 1)`, then `tf` itself when it
is not 1 (most terms occur once in a 100-word passage). That is ~1.5 bytes a posting
where a (float32 score, int32 row) matrix took 8, and is what Lucene's own postings
cost, give or take.

Queries are scored term at a time into a dense accumulator (one per thread): every
posting of every query term is decoded and scored as Lucene's BM25Scorer scores it,
float for float, and summed in double as Lucene's disjunction scorers do, then each
query's top k is taken by (float32 score, tie rank). The kernels are numba-compiled
and release the GIL, so query slices run on several threads at once. Corrupt bytes
(an index loaded with verification off) end a query with an error code, never an
out-of-bounds read.
"""

from __future__ import annotations

import numba
import numpy as np

FORMAT = "vbyte-gap-tf-1"  # in the manifest: an index of another format is refused, not misread
SCHEME_LUCENE, SCHEME_BM25S = 0, 1
CORRUPT = -1


@numba.njit(nogil=True, cache=True)
def _varint_size(v: int) -> int:
    n = 1
    while v >= 128:
        v >>= 7
        n += 1
    return n


@numba.njit(nogil=True, cache=True)
def _put_varint(out: np.ndarray, pos: int, v: int) -> int:
    while v >= 128:
        out[pos] = (v & 127) | 128
        v >>= 7
        pos += 1
    out[pos] = v
    return pos + 1


@numba.njit(nogil=True, cache=True)
def encoded_sizes(counts: np.ndarray, rows: np.ndarray, tf: np.ndarray) -> np.ndarray:
    """Bytes each term's postings take; `rows`/`tf` hold the terms' postings one term
    after another (`counts[t]` of them for term t, rows ascending within a term)."""
    sizes = np.zeros(len(counts), dtype=np.int64)
    j = 0
    for t in range(len(counts)):
        prev = 0
        size = 0
        for _ in range(counts[t]):
            size += _varint_size(((rows[j] - prev) << 1) | (1 if tf[j] == 1 else 0))
            if tf[j] != 1:
                size += _varint_size(tf[j])
            prev = rows[j]
            j += 1
        sizes[t] = size
    return sizes


@numba.njit(nogil=True, cache=True)
def encode(counts: np.ndarray, rows: np.ndarray, tf: np.ndarray, out: np.ndarray) -> int:
    """Write the postings (laid out as for `encoded_sizes`) into `out`; returns bytes written."""
    pos = 0
    j = 0
    for t in range(len(counts)):
        prev = 0
        for _ in range(counts[t]):
            row = np.int64(rows[j])
            pos = _put_varint(out, pos, ((row - prev) << 1) | (1 if tf[j] == 1 else 0))
            if tf[j] != 1:
                pos = _put_varint(out, pos, tf[j])
            prev = row
            j += 1
    return pos


@numba.njit(nogil=True, cache=True)
def decode(postings: np.ndarray, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, tf) of one term: `count` postings from byte `start` (for tests and tools)."""
    rows = np.empty(count, dtype=np.int64)
    tfs = np.empty(count, dtype=np.int64)
    pos = start
    doc = 0
    for i in range(count):
        v = 0
        shift = 0
        while True:
            byte = postings[pos]
            pos += 1
            v |= np.int64(byte & 127) << shift
            if byte < 128:
                break
            shift += 7
        doc += v >> 1
        tf = 1
        if v & 1 == 0:
            tf = 0
            shift = 0
            while True:
                byte = postings[pos]
                pos += 1
                tf |= np.int64(byte & 127) << shift
                if byte < 128:
                    break
                shift += 7
        rows[i] = doc
        tfs[i] = tf
    return rows, tfs


@numba.njit(nogil=True, cache=True)
def _worse(s1: np.float32, r1: np.int64, s2: np.float32, r2: np.int64) -> bool:
    """Whether hit 1 ranks below hit 2: lower score, or the same score and a later tie rank."""
    return s1 < s2 or (s1 == s2 and r1 > r2)


@numba.njit(nogil=True, cache=True)
def _sift_down(hs: np.ndarray, hr: np.ndarray, hd: np.ndarray, m: int, i: int) -> None:
    while True:
        low = i
        for c in (2 * i + 1, 2 * i + 2):
            if c < m and _worse(hs[c], hr[c], hs[low], hr[low]):
                low = c
        if low == i:
            return
        hs[i], hs[low] = hs[low], hs[i]
        hr[i], hr[low] = hr[low], hr[i]
        hd[i], hd[low] = hd[low], hd[i]
        i = low


@numba.njit(nogil=True, cache=True)
def search(
    qptr: np.ndarray, qterm: np.ndarray, qcount: np.ndarray,
    offsets: np.ndarray, df: np.ndarray, postings: np.ndarray,
    weight: np.ndarray, norms: np.ndarray, table: np.ndarray, scheme: int,
    tie_rank: np.ndarray, k: int, acc: np.ndarray, touched: np.ndarray,
    out_rows: np.ndarray, out_scores: np.ndarray,
) -> int:
    """Score queries qptr[i]..qptr[i+1] of (term, count) pairs; their top k go to
    out_rows/out_scores (rows stay -1 past the hits). Returns 0, or CORRUPT when a
    posting decodes outside its term's bytes or the passages.

    lucene: weight[t] is the float32 idf; a term asked c times weighs c * idf (Anserini
    boosts a repeated query term by its count) and scores w - w / (1 + tf * table[norm]).
    bm25s: weight[t] is the float64 idf, norms the exact lengths, table[dl] = k1 * (1 - b + b * dl / avgdl).
    """
    n_docs = len(acc)
    hs = np.empty(k, dtype=np.float32)
    hr = np.empty(k, dtype=np.int64)
    hd = np.empty(k, dtype=np.int64)
    one = np.float32(1.0)
    for q in range(len(qptr) - 1):
        n_touched = 0
        for j in range(qptr[q], qptr[q + 1]):
            t = qterm[j]
            pos = offsets[t]
            end = offsets[t + 1]
            doc = np.int64(0)
            w32 = np.float32(qcount[j]) * np.float32(weight[t])
            for _ in range(df[t]):
                v = np.int64(0)
                shift = 0
                while True:
                    if pos >= end or shift > 56:
                        return CORRUPT
                    byte = postings[pos]
                    pos += 1
                    v |= np.int64(byte & 127) << shift
                    if byte < 128:
                        break
                    shift += 7
                doc += v >> 1
                tf = np.int64(1)
                if v & 1 == 0:
                    tf = 0
                    shift = 0
                    while True:
                        if pos >= end or shift > 56:
                            return CORRUPT
                        byte = postings[pos]
                        pos += 1
                        tf |= np.int64(byte & 127) << shift
                        if byte < 128:
                            break
                        shift += 7
                if doc >= n_docs:
                    return CORRUPT
                if scheme == 0:
                    s = np.float64(w32 - w32 / (one + np.float32(tf) * table[norms[doc]]))
                else:
                    s = qcount[j] * (weight[t] * tf / (tf + table[norms[doc]]))
                if s > 0:
                    if acc[doc] == 0:
                        touched[n_touched] = doc
                        n_touched += 1
                    acc[doc] += s
        m = 0
        for i in range(n_touched):
            doc = touched[i]
            s32 = np.float32(acc[doc])
            acc[doc] = 0
            r = np.int64(tie_rank[doc])
            if m < k:
                hs[m], hr[m], hd[m] = s32, r, doc
                m += 1
                c = m - 1
                while c > 0:  # sift up
                    p = (c - 1) // 2
                    if not _worse(hs[c], hr[c], hs[p], hr[p]):
                        break
                    hs[c], hs[p] = hs[p], hs[c]
                    hr[c], hr[p] = hr[p], hr[c]
                    hd[c], hd[p] = hd[p], hd[c]
                    c = p
            elif _worse(hs[0], hr[0], s32, r):
                hs[0], hr[0], hd[0] = s32, r, doc
                _sift_down(hs, hr, hd, m, 0)
        for slot in range(m - 1, -1, -1):  # pop the worst first: it goes last
            out_rows[q, slot] = hd[0]
            out_scores[q, slot] = hs[0]
            last = slot
            hs[0], hr[0], hd[0] = hs[last], hr[last], hd[last]
            _sift_down(hs, hr, hd, last, 0)
    return 0
