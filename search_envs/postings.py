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

FORMAT = "vbyte-gap-tf-blocks-1"  # in the manifest: an index of another format is refused, not misread
SCHEME_LUCENE, SCHEME_BM25S = 0, 1
BLOCK = 64  # postings per skip block
PROBE_COST = 10  # finding one candidate in a term's blocks costs about as much as scoring this many postings
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


def n_blocks(df: np.ndarray) -> np.ndarray:
    """Skip blocks per term: one per BLOCK postings (a term's last block may be shorter)."""
    return (np.asarray(df, dtype=np.int64) + BLOCK - 1) // BLOCK


@numba.njit(nogil=True, cache=True)
def encode(
    counts: np.ndarray, rows: np.ndarray, tf: np.ndarray, out: np.ndarray, base: int,
    block_offset: np.ndarray, block_last: np.ndarray, norms: np.ndarray, table: np.ndarray, x_max: np.ndarray,
) -> int:
    """Write the postings (laid out as for `encoded_sizes`) into `out`; returns bytes written.

    Also fills, per block of BLOCK postings, its first byte (as `base` + position in
    `out`) and last row, and per term the largest tf * table[norms[row]] (float32),
    from which a query bounds what the term can add to any passage's score."""
    pos = 0
    j = 0
    b = 0
    for t in range(len(counts)):
        prev = 0
        top = np.float32(0.0)
        for i in range(counts[t]):
            if i % BLOCK == 0:
                block_offset[b] = base + pos
                b += 1
            row = np.int64(rows[j])
            pos = _put_varint(out, pos, ((row - prev) << 1) | (1 if tf[j] == 1 else 0))
            if tf[j] != 1:
                pos = _put_varint(out, pos, tf[j])
            top = max(top, np.float32(tf[j]) * np.float32(table[norms[row]]))
            block_last[b - 1] = row
            prev = row
            j += 1
        x_max[t] = top
    return pos


@numba.njit(nogil=True, cache=True)
def _varint(postings: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the code at `pos`; position -1 if it runs past `end`."""
    v = np.int64(0)
    shift = 0
    while True:
        if pos >= end or shift > 56:
            return 0, -1
        byte = postings[pos]
        pos += 1
        v |= np.int64(byte & 127) << shift
        if byte < 128:
            return v, pos
        shift += 7


@numba.njit(nogil=True, cache=True)
def _next(postings: np.ndarray, pos: int, end: int, doc: int) -> tuple[int, int, int]:
    """(next position, row, tf) of the posting at `pos` after row `doc`; position -1 if corrupt."""
    v, pos = _varint(postings, pos, end)
    if pos < 0:
        return -1, 0, 0
    if v & 1:
        return pos, doc + (v >> 1), 1
    tf, pos = _varint(postings, pos, end)
    return pos, doc + (v >> 1), tf


def decode(postings: np.ndarray, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, tf) of one term: `count` postings from byte `start` (for tests and tools)."""
    rows, tfs = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
    pos, doc = start, 0
    for i in range(count):
        pos, doc, tfs[i] = _next(postings, pos, len(postings), doc)
        rows[i] = doc
    return rows, tfs


@numba.njit(nogil=True, cache=True)
def _worse(s1: np.float32, r1: np.int64, s2: np.float32, r2: np.int64) -> bool:
    """Whether hit 1 ranks below hit 2: lower score, or the same score and a later tie rank."""
    return s1 < s2 or (s1 == s2 and r1 > r2)


@numba.njit(nogil=True, cache=True)
def _swap(hs: np.ndarray, hr: np.ndarray, hd: np.ndarray, where: np.ndarray, i: int, j: int) -> None:
    hs[i], hs[j] = hs[j], hs[i]
    hr[i], hr[j] = hr[j], hr[i]
    hd[i], hd[j] = hd[j], hd[i]
    where[hd[i]], where[hd[j]] = i, j


@numba.njit(nogil=True, cache=True)
def _sift_down(hs: np.ndarray, hr: np.ndarray, hd: np.ndarray, where: np.ndarray, m: int, i: int) -> None:
    while True:
        low = i
        for c in (2 * i + 1, 2 * i + 2):
            if c < m and _worse(hs[c], hr[c], hs[low], hr[low]):
                low = c
        if low == i:
            return
        _swap(hs, hr, hd, where, i, low)
        i = low


@numba.njit(nogil=True, cache=True)
def _offer(doc: int, s32: np.float32, tie_rank: np.ndarray, hs: np.ndarray, hr: np.ndarray, hd: np.ndarray, where: np.ndarray, m: int) -> int:
    """Put a passage whose score rose to s32 into the top-k heap if it belongs there (the
    root hs[0] is the worst of the top k; where[doc] is a passage's slot, -1 if none);
    returns the heap's size. Called only when s32 >= hs[0] or the heap is not full."""
    p = where[doc]
    if p >= 0:  # already in: its score rose, so it moves away from the root
        hs[p] = s32
        _sift_down(hs, hr, hd, where, m, p)
        return m
    r = np.int64(tie_rank[doc])
    if m < len(hs):
        hs[m], hr[m], hd[m] = s32, r, doc
        where[doc] = m
        c = m
        while c > 0:  # sift up
            parent = (c - 1) // 2
            if not _worse(hs[c], hr[c], hs[parent], hr[parent]):
                break
            _swap(hs, hr, hd, where, c, parent)
            c = parent
        return m + 1
    if _worse(hs[0], hr[0], s32, r):
        where[hd[0]] = -1
        hs[0], hr[0], hd[0] = s32, r, doc
        where[doc] = 0
        _sift_down(hs, hr, hd, where, m, 0)
    return m


@numba.njit(nogil=True, cache=True)
def _fill_once(once: np.ndarray, table: np.ndarray, scheme: int, w32: np.float32, c: int, w: float) -> None:
    """A term's score at tf = 1 for each length code (the common case, looked up)."""
    one = np.float32(1.0)
    for i in range(len(table)):
        if scheme == 0:
            once[i] = w32 - w32 / (one + table[i])
        else:
            once[i] = c * (w / (1 + table[i]))


@numba.njit(nogil=True, cache=True)
def search(
    qptr: np.ndarray, qterm: np.ndarray, qcount: np.ndarray,
    offsets: np.ndarray, df: np.ndarray, postings: np.ndarray,
    weight: np.ndarray, norms: np.ndarray, table: np.ndarray, scheme: int,
    first_block: np.ndarray, block_offset: np.ndarray, block_last: np.ndarray, x_max: np.ndarray, prune: bool,
    tie_rank: np.ndarray, k: int, acc: np.ndarray, touched: np.ndarray, where: np.ndarray,
    out_rows: np.ndarray, out_scores: np.ndarray, counters: np.ndarray,
) -> int:
    """Score queries qptr[i]..qptr[i+1] of (term, count) pairs; their top k go to
    out_rows/out_scores (rows stay -1 past the hits). Returns 0, or CORRUPT when a
    posting decodes outside its term's bytes or the passages. `acc` (zeros), `touched`
    and `where` (all -1) are this thread's scratch, left as they were found. Adds to
    `counters`: postings of the query terms, postings scored one by one, queries that
    pruned, candidates looked up, postings in the blocks decoded to find them.

    lucene: weight[t] is the float32 idf; a term asked c times weighs c * idf (Anserini
    boosts a repeated query term by its count) and scores w - w / (1 + tf * table[norm]).
    bm25s: weight[t] is the float64 idf, norms the exact lengths, table[dl] = k1 * (1 - b + b * dl / avgdl).

    The top k so far are kept in a heap as scores add up, so the k-th best score is
    always known. Terms go in order of the most they can add (bound from x_max). With
    `prune` (lucene only), once the k-th best score beats all that the remaining terms
    can add together, no passage unseen yet can make the top k: the rest of the query
    only scores the passages that still can (MaxScore), reaching them through the skip
    blocks when that is cheaper. The top k are exactly those of scoring every posting.
    """
    n_docs = len(acc)
    if len(touched) <= n_docs or len(where) != n_docs:
        raise ValueError("touched needs one slot more than there are passages, where one per passage")
    hs = np.empty(k, dtype=np.float32)
    hr = np.empty(k, dtype=np.int64)
    hd = np.empty(k, dtype=np.int64)
    one = np.float32(1.0)
    once = np.empty(len(table), dtype=np.float64)
    n_terms = qptr[len(qptr) - 1] - qptr[0]
    bound = np.empty(n_terms + 1, dtype=np.float64)
    left_df = np.empty(n_terms + 1, dtype=np.int64)
    order = np.empty(n_terms, dtype=np.int64)
    cand = np.empty(0, dtype=touched.dtype)
    for q in range(len(qptr) - 1):
        nq = qptr[q + 1] - qptr[q]
        for i in range(nq):  # most the term can add; order: largest first
            j = qptr[q] + i
            w32 = np.float32(qcount[j]) * np.float32(weight[qterm[j]])
            bound[i] = w32 - w32 / (one + x_max[qterm[j]])
            order[i] = j
        for i in range(1, nq):
            c = i
            while c > 0 and bound[c] > bound[c - 1]:
                bound[c], bound[c - 1] = bound[c - 1], bound[c]
                order[c], order[c - 1] = order[c - 1], order[c]
                c -= 1
        bound[nq] = 0.0
        left_df[nq] = 0
        for i in range(nq - 1, -1, -1):  # bound[i]: most terms i.. can add together; left_df: their postings
            bound[i] += bound[i + 1]
            left_df[i] = left_df[i + 1] + df[qterm[order[i]]]
        n_touched = 0
        m = 0  # passages in the heap
        floor = np.float32(0.0)  # hs[0] once the heap is full: a passage below it cannot enter
        n_cand = -1  # -1: every passage is still in the running
        for i in range(nq):
            j = order[i]
            t = qterm[j]
            w32 = np.float32(qcount[j]) * np.float32(weight[t])
            _fill_once(once, table, scheme, w32, qcount[j], weight[t])
            live = n_touched if n_cand < 0 else n_cand
            worth = left_df[i] if n_cand < 0 else df[t]  # postings a (re)filtering may spare
            if prune and scheme == 0 and m == k and np.float32(bound[i] * (1 + 1e-9)) < floor and 2 * worth > live:
                if n_cand < 0:  # from now on only passages seen so far can make the top k
                    counters[2] += 1
                    cand = touched[:n_touched].copy()
                kept = 0
                counters[5] += live
                for c in range(live):
                    if np.float32((acc[cand[c]] + bound[i]) * (1 + 1e-9)) >= floor:
                        cand[kept] = cand[c]
                        kept += 1
                if n_cand < 0:
                    counters[3] += kept
                    cand[:kept].sort()
                n_cand = kept
            counters[0] += df[t]
            pos = offsets[t]
            end = offsets[t + 1]
            if n_cand >= 0 and n_cand * PROBE_COST < df[t]:  # score only the candidates, skipping the blocks without one
                b, b_end = first_block[t], first_block[t + 1]
                at = -1  # block being decoded; doc/tf: its last decoded posting
                doc = np.int64(-1)
                tf = 0
                left = 0
                for c in range(n_cand):
                    target = cand[c]
                    while b < b_end and block_last[b] < target:
                        b += 1
                    if b == b_end:
                        break
                    if at != b:
                        counters[4] += min(BLOCK, df[t] - (b - first_block[t]) * BLOCK)
                        at, pos = b, block_offset[b]
                        if pos < offsets[t] or pos >= end:
                            return CORRUPT
                        doc = np.int64(block_last[b - 1]) if b > first_block[t] else np.int64(0)
                        left = min(BLOCK, df[t] - (b - first_block[t]) * BLOCK)
                        pos, doc, tf = _next(postings, pos, end, doc)
                        left -= 1
                    while doc < target and left > 0 and pos >= 0:
                        pos, doc, tf = _next(postings, pos, end, doc)
                        left -= 1
                    if pos < 0 or doc < 0 or doc >= n_docs:
                        return CORRUPT
                    if doc == target:
                        if tf == 1:
                            acc[doc] += once[norms[doc]]
                        else:
                            acc[doc] += np.float64(w32 - w32 / (one + np.float32(tf) * table[norms[doc]]))
                        s32 = np.float32(acc[doc])
                        if s32 >= floor:
                            m = _offer(doc, s32, tie_rank, hs, hr, hd, where, m)
                            if m == k:
                                floor = hs[0]
                continue
            counters[1] += df[t]
            doc = np.int64(0)
            for _ in range(df[t]):
                if pos >= end:
                    return CORRUPT
                v = np.int64(postings[pos])
                pos += 1
                if v >= 128:  # more bytes (rare: most gaps are short)
                    v &= 127
                    shift = 7
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
                if doc >= n_docs:
                    return CORRUPT
                if v & 1:
                    s = once[norms[doc]]
                else:
                    tf, pos = _varint(postings, pos, end)
                    if pos < 0:
                        return CORRUPT
                    if scheme == 0:
                        s = np.float64(w32 - w32 / (one + np.float32(tf) * table[norms[doc]]))
                    else:
                        s = qcount[j] * (weight[t] * tf / (tf + table[norms[doc]]))
                touched[n_touched] = doc  # kept only if new: branch-free (the branch mispredicts half the time)
                n_touched += np.int64((acc[doc] == 0) & (s > 0))
                acc[doc] += s
                s32 = np.float32(acc[doc])
                if s32 >= floor and s32 > 0:
                    m = _offer(doc, s32, tie_rank, hs, hr, hd, where, m)
                    if m == k:
                        floor = hs[0]
        for i in range(n_touched):
            acc[touched[i]] = 0
        for slot in range(m - 1, -1, -1):  # pop the worst first: it goes last
            out_rows[q, slot] = hd[0]
            out_scores[q, slot] = hs[0]
            where[hd[0]] = -1
            _swap(hs, hr, hd, where, 0, slot)
            where[hd[slot]] = -1
            _sift_down(hs, hr, hd, where, slot, 0)
    return 0
