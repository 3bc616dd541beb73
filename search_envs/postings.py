"""Compressed BM25 postings: encoded once at build time, scored per query in compiled code.

Each term's postings are its passages in row order, stored as variable-byte codes (7
bits a byte, high bit = more bytes): `(gap << 1) | (tf == 1)`, then `tf` itself when it
is not 1 (most terms occur once in a 100-word passage). That is ~1.5 bytes a posting
where a (float32 score, int32 row) matrix took 8, and is what Lucene's own postings
cost, give or take.

Queries are scored by `search`, a numba kernel that releases the GIL (query slices run
on several threads): every posting it scores is scored as Lucene's BM25Scorer does,
float for float, and a passage's terms are summed in double as Lucene's disjunctions
do; the top k are taken by (float32 score, tie rank). It works a window of rows at a
time with MaxScore and block-max bounds (Lucene's MaxScoreBulkScorer scheme), so most
postings of common terms are never decoded, and the result is exactly that of scoring
them all. Corrupt bytes (an index loaded with verification off) end a query with an
error code, never a read out of bounds.
"""

from __future__ import annotations

import numba
import numpy as np

FORMAT = "vbyte-gap-tf-blocks-1"  # in the manifest: an index of another format is refused, not misread
SCHEME_LUCENE, SCHEME_BM25S = 0, 1
BLOCK = 64  # postings per skip block
WINDOW = 4096  # rows scored together: the window's accumulator stays in the CPU cache
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
    block_offset: np.ndarray, block_last: np.ndarray, block_max: np.ndarray, norms: np.ndarray, table: np.ndarray,
) -> int:
    """Write the postings (laid out as for `encoded_sizes`) into `out`; returns bytes written.

    Also fills, per block of BLOCK postings, its first byte (as `base` + position in
    `out`), last row and largest tf * table[norms[row]] (float32): from these a query
    bounds what the term can add to a passage's score in a window (scores grow with
    tf * table[norm])."""
    pos = 0
    j = 0
    b = 0
    for t in range(len(counts)):
        prev = 0
        for i in range(counts[t]):
            if i % BLOCK == 0:
                block_offset[b] = base + pos
                block_max[b] = 0
                b += 1
            row = np.int64(rows[j])
            pos = _put_varint(out, pos, ((row - prev) << 1) | (1 if tf[j] == 1 else 0))
            if tf[j] != 1:
                pos = _put_varint(out, pos, tf[j])
            block_max[b - 1] = max(block_max[b - 1], np.float32(tf[j]) * np.float32(table[norms[row]]))
            block_last[b - 1] = row
            prev = row
            j += 1
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


@numba.njit(nogil=True, cache=True, inline="always")
def _next(postings: np.ndarray, pos: int, end: int, doc: int) -> tuple[int, int, int]:
    """(next position, row, tf) of the posting at `pos` after row `doc`; position -1 if corrupt.
    Inlined where it is called: it is the scoring loops' inner step."""
    if pos >= end:
        return -1, 0, 0
    v = np.int64(postings[pos])
    pos += 1
    if v >= 128:  # more bytes (rare: most gaps are short)
        rest, pos = _varint(postings, pos, end)
        if pos < 0 or rest >= (1 << 56):
            return -1, 0, 0
        v = (v & 127) | (rest << 7)
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
def _offer(doc: int, s32: np.float32, r: int, hs: np.ndarray, hr: np.ndarray, hd: np.ndarray, m: int) -> int:
    """Add a scored passage to the top-k heap (root hs[0]: the worst of the top k) if it
    belongs there; returns the heap's size."""
    if m < len(hs):
        hs[m], hr[m], hd[m] = s32, r, doc
        c = m
        while c > 0:  # sift up
            parent = (c - 1) // 2
            if not _worse(hs[c], hr[c], hs[parent], hr[parent]):
                break
            hs[c], hs[parent] = hs[parent], hs[c]
            hr[c], hr[parent] = hr[parent], hr[c]
            hd[c], hd[parent] = hd[parent], hd[c]
            c = parent
        return m + 1
    if _worse(hs[0], hr[0], s32, r):
        hs[0], hr[0], hd[0] = s32, r, doc
        _sift_down(hs, hr, hd, m, 0)
    return m


@numba.njit(nogil=True, cache=True, inline="always")
def _skip(block_last: np.ndarray, first: int, n_blocks: int, b: int, target: int) -> int:
    """The first of a term's skip blocks from `b` on whose last row is at or after `target`
    (`n_blocks` if none): the blocks before it cannot hold `target`."""
    while b < n_blocks and block_last[first + b] < target:
        b += 1
    return b


@numba.njit(nogil=True, cache=True, inline="always")
def _seek(
    postings: np.ndarray, start: int, end: int, df: int, first: int, n_blocks: int, block_offset: np.ndarray,
    block_last: np.ndarray, pos: int, doc: int, tf: int, idx: int, target: int,
) -> tuple[int, int, int, int, int]:
    """Move a term's cursor (byte position, row, tf, posting index; row -1 past the last
    posting) to its first posting at or after row `target`, jumping over the skip blocks
    that end before it; returns the cursor and the postings decoded on the way. Position
    -1 if the bytes are corrupt."""
    steps = 0
    if doc < 0 or doc >= target:
        return pos, doc, tf, idx, steps
    b = idx // BLOCK
    if block_last[first + b] < target:
        b = _skip(block_last, first, n_blocks, b + 1, target)
        if b == n_blocks:
            return pos, -1, tf, idx, steps
        pos = block_offset[first + b]
        if pos < start or pos >= end:
            return -1, doc, tf, idx, steps
        idx = b * BLOCK
        pos, doc, tf = _next(postings, pos, end, np.int64(block_last[first + b - 1]) if b > 0 else np.int64(0))
    while pos >= 0 and doc < target:  # within the block: it ends at or after target
        idx += 1
        steps += 1
        if idx >= df:
            return -1, doc, tf, idx, steps
        pos, doc, tf = _next(postings, pos, end, doc)
    return pos, doc, tf, idx, steps


_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_INDEX = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _BIT_INDEX[((1 << _i) * int(_DEBRUIJN) % 2**64) >> 58] = _i


@numba.njit(nogil=True, cache=True)
def _marked(marks: np.ndarray, out: np.ndarray) -> int:
    """The positions of the set bits, in order, into `out` (clearing them); returns how
    many. Cheaper than sorting the survivors of a window: a word per 64 rows."""
    n = 0
    for w in range(len(marks)):
        bits = marks[w]
        if bits == 0:
            continue
        marks[w] = 0
        while bits:
            low = bits & (np.uint64(0) - bits)
            out[n] = w * 64 + _BIT_INDEX[(low * _DEBRUIJN) >> np.uint64(58)]
            n += 1
            bits ^= low
    return n


@numba.njit(nogil=True, cache=True)
def _term_score(scheme: int, w32: np.float32, c: int, w: float, tf: int, norm_entry: float) -> float:
    """One posting's score (see `search`): float32 arithmetic as Lucene's BM25Scorer."""
    if scheme == 0:
        return np.float64(w32 - w32 / (np.float32(1.0) + np.float32(tf) * np.float32(norm_entry)))
    return c * (w * tf / (tf + norm_entry))


@numba.njit(nogil=True, cache=True)
def search(
    qptr: np.ndarray, qterm: np.ndarray, qcount: np.ndarray,
    offsets: np.ndarray, df: np.ndarray, postings: np.ndarray,
    weight: np.ndarray, norms: np.ndarray, table: np.ndarray, scheme: int,
    first_block: np.ndarray, block_offset: np.ndarray, block_last: np.ndarray, block_max: np.ndarray, prune: bool,
    tie_rank: np.ndarray, k: int, out_rows: np.ndarray, out_scores: np.ndarray, counters: np.ndarray,
) -> int:
    """Score queries qptr[i]..qptr[i+1] of (term, count) pairs; their top k go to
    out_rows/out_scores (rows stay -1 past the hits). Returns 0, or CORRUPT when a
    posting decodes outside its term's bytes or the passages. Adds to `counters`:
    postings of the query terms, postings scored in windows, passages looked up in a
    non-essential term, postings stepped over in those look-ups.

    lucene: weight[t] is the float32 idf; a term asked c times weighs c * idf (Anserini
    boosts a repeated query term by its count) and scores w - w / (1 + tf * table[norm]).
    bm25s: weight[t] is the float64 idf, norms the exact lengths, table[dl] = k1 * (1 - b + b * dl / avgdl).

    Passages are scored a window of WINDOW rows at a time, as Lucene's
    MaxScoreBulkScorer does: the window's postings of every "essential" term are added
    into a small buffer (cache-resident, unlike one accumulator over the corpus), then
    each passage there is completed and offered to a top-k heap. With `prune` (lucene
    only), a term is "non-essential" in a window when the k-th best score so far beats
    all that it and the terms that can add less could add together there (bounded by
    the largest tf * table[norm] of its skip blocks in the window): a passage none of
    the essential terms has cannot make the top k, and one that has them is looked up
    in the non-essential terms (jumping over skip blocks) only while it still can; a
    window with no essential term is skipped. Exactly the top k of scoring every
    posting, from a fraction of the postings.
    """
    n_docs = len(tie_rank)
    hs = np.empty(k, dtype=np.float32)
    hr = np.empty(k, dtype=np.int64)
    hd = np.empty(k, dtype=np.int64)
    buf = np.zeros(WINDOW, dtype=np.float64)
    hits = np.empty(WINDOW + 1, dtype=np.int64)
    keep = np.empty(WINDOW, dtype=np.int64)
    marks = np.zeros(WINDOW // 64, dtype=np.uint64)  # survivors of a window, one bit each
    n_max = 1
    for q in range(len(qptr) - 1):
        n_max = max(n_max, qptr[q + 1] - qptr[q])
    once = np.empty((n_max, len(table)), dtype=np.float64)
    w32s = np.empty(n_max, dtype=np.float32)
    wbound = np.empty(n_max, dtype=np.float64)  # the most each term adds in this window
    worder = np.empty(n_max, dtype=np.int64)
    ne_bound = np.empty(n_max + 1, dtype=np.float64)
    bp = np.empty(n_max, dtype=np.int64)  # per term: first skip block not before the window
    cur = np.empty((n_max, 4), dtype=np.int64)  # per term: byte position, row, tf, posting index
    one = np.float32(1.0)
    slack = 1 + 1e-9  # bounds are sums of float32 values in double: a hair of room for rounding
    for q in range(len(qptr) - 1):
        q0, nq = qptr[q], qptr[q + 1] - qptr[q]
        for i in range(nq):
            t = qterm[q0 + i]
            if offsets[t] < 0 or offsets[t] > offsets[t + 1] or offsets[t + 1] > len(postings) or df[t] < 1:
                return CORRUPT
            w32s[i] = np.float32(qcount[q0 + i]) * np.float32(weight[t])
            for e in range(len(table)):  # score at tf = 1 by length code: the common case, looked up
                once[i, e] = _term_score(scheme, w32s[i], qcount[q0 + i], weight[t], 1, table[e])
            pos, doc, tf = _next(postings, offsets[t], offsets[t + 1], 0)  # the cursor on its first posting
            if pos < 0:
                return CORRUPT
            cur[i, 0], cur[i, 1], cur[i, 2], cur[i, 3] = pos, doc, tf, 0
            bp[i] = 0
            counters[0] += df[t]
        m = 0
        floor = np.float32(0.0)
        scored = looked = stepped = 0
        w0 = n_docs
        for i in range(nq):
            if cur[i, 1] >= 0:
                w0 = min(w0, cur[i, 1])
        while w0 < n_docs:
            w1 = min(n_docs, w0 + WINDOW)
            p = 0  # worder[:p]: the window's non-essential terms
            for i in range(nq):
                worder[i] = i
            if prune and scheme == 0 and m == k:
                for i in range(nq):
                    t = qterm[q0 + i]
                    fb, nb = first_block[t], first_block[t + 1] - first_block[t]
                    b = bp[i] = _skip(block_last, fb, nb, bp[i], w0)
                    x = np.float32(0.0)
                    while b < nb:
                        x = max(x, block_max[fb + b])
                        if block_last[fb + b] >= w1:
                            break
                        b += 1
                    wbound[i] = w32s[i] - w32s[i] / (one + x) if x > 0 else 0.0
                for i in range(1, nq):  # least first
                    c = i
                    while c > 0 and wbound[worder[c]] < wbound[worder[c - 1]]:
                        worder[c], worder[c - 1] = worder[c - 1], worder[c]
                        c -= 1
                ne_bound[0] = 0.0
                while p < nq and np.float32((ne_bound[p] + wbound[worder[p]]) * slack) < floor:
                    ne_bound[p + 1] = ne_bound[p] + wbound[worder[p]]
                    p += 1
            n_hits = 0
            for e in range(p, nq):  # essential terms: their postings in the window, into buf
                i = worder[e]
                t = qterm[q0 + i]
                end = offsets[t + 1]
                pos, doc, tf, idx, _ = _seek(postings, offsets[t], end, df[t], first_block[t], first_block[t + 1] - first_block[t],
                                             block_offset, block_last, cur[i, 0], cur[i, 1], cur[i, 2], cur[i, 3], w0)
                if pos < 0:
                    return CORRUPT
                start = idx
                while doc >= 0 and doc < w1:
                    if tf == 1:
                        s = once[i, norms[doc]]
                    else:
                        s = _term_score(scheme, w32s[i], qcount[q0 + i], weight[t], tf, table[norms[doc]])
                    d = doc - w0
                    hits[n_hits] = d  # kept if new: branch-free (scores are >= 0, so buf[d] only grows)
                    n_hits += np.int64((buf[d] == 0) & (s > 0))
                    if n_hits > WINDOW:
                        return CORRUPT
                    buf[d] += s
                    idx += 1
                    if idx >= df[t]:
                        doc = -1
                        break
                    pos, doc, tf = _next(postings, pos, end, doc)
                    if pos < 0 or doc >= n_docs:
                        return CORRUPT
                scored += idx - start
                cur[i, 0], cur[i, 1], cur[i, 2], cur[i, 3] = pos, doc, tf, idx
            n_keep = 0
            for h in range(n_hits):
                d = hits[h]
                sc = buf[d]
                if p == 0:
                    buf[d] = 0.0
                    s32 = np.float32(sc)
                    if s32 >= floor and s32 > 0:
                        m = _offer(w0 + d, s32, np.int64(tie_rank[w0 + d]), hs, hr, hd, m)
                        if m == k:
                            floor = hs[0]
                elif np.float32((sc + ne_bound[p]) * slack) >= floor:
                    marks[d >> 6] |= np.uint64(1) << np.uint64(d & 63)
                    n_keep += 1
                else:
                    buf[d] = 0.0
            if n_keep:
                n_keep = _marked(marks, keep)  # in row order: look-ups go forward through the postings
                for e in range(p - 1, -1, -1):  # the non-essential terms, most first: a pass over the survivors each
                    i = worder[e]
                    t = qterm[q0 + i]
                    end = offsets[t + 1]
                    fb, nb = first_block[t], first_block[t + 1] - first_block[t]
                    pos, doc, tf, idx = cur[i, 0], cur[i, 1], cur[i, 2], cur[i, 3]
                    looked += n_keep
                    kept = 0
                    for h in range(n_keep):
                        d = keep[h]
                        target = w0 + d
                        if doc >= 0 and doc < target:  # `_seek`, written out: through the call this loop ran 25% slower
                            b = idx // BLOCK
                            if block_last[fb + b] < target:  # jump to the block that may hold it
                                b = _skip(block_last, fb, nb, b + 1, target)
                                if b == nb:
                                    doc = -1
                                else:
                                    pos = block_offset[fb + b]
                                    if pos < offsets[t] or pos >= end:
                                        return CORRUPT
                                    idx = b * BLOCK
                                    pos, doc, tf = _next(postings, pos, end, np.int64(block_last[fb + b - 1]))
                            while doc >= 0 and doc < target:  # within the block: it ends at or after target
                                idx += 1
                                stepped += 1
                                if idx >= df[t]:
                                    return CORRUPT
                                pos, doc, tf = _next(postings, pos, end, doc)
                                if pos < 0:
                                    return CORRUPT
                            if pos < 0 or doc >= n_docs:
                                return CORRUPT
                        if doc == target:
                            buf[d] += once[i, norms[doc]] if tf == 1 else _term_score(
                                scheme, w32s[i], qcount[q0 + i], weight[t], tf, table[norms[doc]])
                        if np.float32((buf[d] + ne_bound[e]) * slack) >= floor:
                            keep[kept] = d
                            kept += 1
                        else:
                            buf[d] = 0.0
                    cur[i, 0], cur[i, 1], cur[i, 2], cur[i, 3] = pos, doc, tf, idx
                    n_keep = kept
                for h in range(n_keep):
                    d = keep[h]
                    s32 = np.float32(buf[d])
                    buf[d] = 0.0
                    if s32 >= floor and s32 > 0:
                        m = _offer(w0 + d, s32, np.int64(tie_rank[w0 + d]), hs, hr, hd, m)
                        if m == k:
                            floor = hs[0]
            w_next = n_docs  # the next window starts at the first posting left, of any term
            for i in range(nq):
                t = qterm[q0 + i]
                doc = cur[i, 1]
                if doc >= w1:
                    w_next = min(w_next, doc)
                elif doc >= 0:  # behind: its next posting is at or after w1, somewhere in these blocks
                    fb, nb = first_block[t], first_block[t + 1] - first_block[t]
                    b = _skip(block_last, fb, nb, max(bp[i], cur[i, 3] // BLOCK), w1)
                    if b < nb:
                        w_next = min(w_next, max(w1, np.int64(block_last[fb + b - 1]) + 1 if b > 0 else w1))
            w0 = w_next
        counters[1] += scored
        counters[2] += looked
        counters[3] += stepped
        for slot in range(m - 1, -1, -1):  # pop the worst first: it goes last
            out_rows[q, slot] = hd[0]
            out_scores[q, slot] = hs[0]
            hs[0], hr[0], hd[0] = hs[slot], hr[slot], hd[slot]
            _sift_down(hs, hr, hd, slot, 0)
    return 0
