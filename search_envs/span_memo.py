"""The index build's tokenizing hot loop, compiled: UTF-8 text cut into spans and each
span looked up in a memo of what it analyses to.

An analyzer's candidates (`search_envs.analysis`) are runs of word characters, maybe
joined by "joiner" characters between two word characters. Here every byte of a
non-ASCII character counts as a word character, so each span is a union of whole
candidates: an all-ASCII span is exactly one candidate; a span with non-ASCII bytes is
re-split by the analyzer itself (in Python) the first time it is seen. The memo maps a
span's bytes (ASCII letters lower-cased) to a code the analyzer gave it (a term id, no
term, or a list of terms), so after the first sight of a span the work is one hash and
one comparison, in numba, not a regex match and a dictionary look-up per token in
Python: the analysis of a corpus gets several times faster.
"""

from __future__ import annotations

import numba
import numpy as np

UNSEEN = -(2**62)  # a span's code before the analyzer has given it one
_WORD = np.zeros(256, dtype=np.bool_)  # bytes of word characters: ASCII letters, digits, "_", every non-ASCII byte
_WORD[[*b"0123456789_", *range(65, 91), *range(97, 123), *range(128, 256)]] = True
_FNV_OFFSET, _FNV_PRIME = np.uint64(14695981039346656037), np.uint64(1099511628211)


@numba.njit(nogil=True, cache=True)
def _hash(buf: np.ndarray, start: int, end: int) -> np.uint64:
    h = _FNV_OFFSET
    for i in range(start, end):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


@numba.njit(nogil=True, cache=True)
def _find(keys: np.ndarray, slot_off: np.ndarray, slot_len: np.ndarray, buf: np.ndarray, start: int, end: int, h: np.uint64) -> int:
    """The slot holding buf[start:end], or the empty slot where it would go."""
    mask = len(slot_off) - 1
    s = np.int64(h & np.uint64(mask))
    n = end - start
    while True:
        off = slot_off[s]
        if off < 0:
            return s
        if slot_len[s] == n:
            same = True
            for i in range(n):
                if keys[off + i] != buf[start + i]:
                    same = False
                    break
            if same:
                return s
        s = (s + 1) & mask


@numba.njit(nogil=True, cache=True)
def _spans(
    buf: np.ndarray, bounds: np.ndarray, joiner: np.ndarray, quote_joins: bool,
    keys: np.ndarray, slot_off: np.ndarray, slot_len: np.ndarray, slot_code: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(codes, starts, ends, spans per text) of texts buf[bounds[i]:bounds[i+1]]; ASCII
    letters of `buf` are lower-cased in place. A code is UNSEEN for a span not in the memo."""
    n_max = len(buf) // 2 + len(bounds)
    codes = np.empty(n_max, dtype=np.int64)
    starts = np.empty(n_max, dtype=np.int64)
    ends = np.empty(n_max, dtype=np.int64)
    per_text = np.zeros(len(bounds) - 1, dtype=np.int64)
    n = 0
    for t in range(len(bounds) - 1):
        lo, hi = bounds[t], bounds[t + 1]
        i = lo
        while i < hi:
            if not _WORD[buf[i]]:
                i += 1
                continue
            start = i
            h = _FNV_OFFSET  # the span's hash, as `_hash` computes it, on the way
            while i < hi:
                c = buf[i]
                if 65 <= c <= 90:
                    c += 32
                    buf[i] = c
                elif not _WORD[c] and not (
                    i + 1 < hi and _WORD[buf[i + 1]]  # a joiner between two word characters stays in the span
                    and (joiner[c] or (quote_joins and c == 34 and buf[i - 1] >= 128 and buf[i + 1] >= 128))
                ):
                    break
                h = (h ^ np.uint64(c)) * _FNV_PRIME
                i += 1
            slot = _find(keys, slot_off, slot_len, buf, start, i, h)
            codes[n] = slot_code[slot] if slot_off[slot] >= 0 else UNSEEN
            starts[n], ends[n] = start, i
            n += 1
            per_text[t] += 1
    return codes[:n], starts[:n], ends[:n], per_text


@numba.njit(nogil=True, cache=True)
def _insert(keys: np.ndarray, used: int, slot_off: np.ndarray, slot_len: np.ndarray, slot_code: np.ndarray,
            key: np.ndarray, code: int) -> int:
    """Add key -> code (keys has room); returns the key bytes used."""
    s = _find(keys, slot_off, slot_len, key, 0, len(key), _hash(key, 0, len(key)))
    if slot_off[s] >= 0:
        slot_code[s] = code
        return used
    keys[used : used + len(key)] = key
    slot_off[s], slot_len[s], slot_code[s] = used, len(key), code
    return used + len(key)


def _empty_slots(capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key offsets, -1 for empty; key lengths; codes) of `capacity` empty slots."""
    return np.full(capacity, -1, dtype=np.int64), np.zeros(capacity, dtype=np.int32), np.zeros(capacity, dtype=np.int64)


class SpanMemo:
    """span bytes -> code, an open-addressing hash table in numpy arrays (kept under half full)."""

    def __init__(self, joiners: bytes, quote_joins: bool) -> None:
        self.joiner = np.zeros(256, dtype=np.bool_)
        self.joiner[list(joiners)] = True
        self.quote_joins = quote_joins
        self.clear()

    def clear(self) -> None:
        self.keys = np.zeros(1 << 20, dtype=np.uint8)
        self.used = 0
        self.slot_off, self.slot_len, self.slot_code = _empty_slots(1 << 16)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def spans(self, buf: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(codes, starts, ends, spans per text) of the texts buf[bounds[i]:bounds[i+1]]
        (UTF-8; ASCII letters are lower-cased in place)."""
        return _spans(buf, bounds, self.joiner, self.quote_joins, self.keys, self.slot_off, self.slot_len, self.slot_code)

    def insert(self, key: bytes, code: int) -> None:
        if 2 * (self.size + 1) > len(self.slot_off):
            self._rehash(2 * len(self.slot_off))
        if self.used + len(key) > len(self.keys):
            self.keys = np.concatenate([self.keys, np.zeros(max(len(self.keys), len(key)), dtype=np.uint8)])
        before = self.used
        self.used = _insert(self.keys, self.used, self.slot_off, self.slot_len, self.slot_code,
                            np.frombuffer(key, dtype=np.uint8), code)
        self.size += self.used > before

    def _rehash(self, capacity: int) -> None:
        slot_off, slot_len, slot_code = _empty_slots(capacity)
        _move(self.keys, self.slot_off, self.slot_len, self.slot_code, slot_off, slot_len, slot_code)
        self.slot_off, self.slot_len, self.slot_code = slot_off, slot_len, slot_code


@numba.njit(nogil=True, cache=True)
def _move(keys: np.ndarray, old_off: np.ndarray, old_len: np.ndarray, old_code: np.ndarray,
          slot_off: np.ndarray, slot_len: np.ndarray, slot_code: np.ndarray) -> None:
    """Re-place every entry of the old slots into the (larger, empty) new ones."""
    for s in range(len(old_off)):
        off = old_off[s]
        if off >= 0:
            end = off + old_len[s]
            t = _find(keys, slot_off, slot_len, keys, off, end, _hash(keys, off, end))
            slot_off[t], slot_len[t], slot_code[t] = off, old_len[s], old_code[s]
