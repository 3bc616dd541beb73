"""The compressed BM25 postings (`search_envs.postings`) and the kernel that scores them.

tests/test_bm25.py compares rankings with recorded Pyserini runs; here the postings
are checked on their own: the codes round-trip, the skip blocks' bounds are right, and
every query's top k equals an independent numpy oracle (decode every posting, score it
as Lucene's BM25Scorer does, sum in double) exactly, with pruning on and off, for many
k, thread counts and batch sizes. Corrupt files must end in an error, never a crash.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from search_envs import postings
from search_envs.bm25_build import norm_table
from search_envs.index import BrokenIndexError, build_index, load_index

KS = (1, 3, 10, 100, 1000)


# ---------------------------------------------------------------- codes and skip blocks


def _random_postings(rng: np.random.Generator, counts: list[int], max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    rows, tfs = [], []
    for c in counts:
        gaps = rng.integers(1, max_gap + 1, size=c, dtype=np.int64)
        gaps[0] = rng.integers(0, max_gap + 1)  # a term's first row is a gap from 0 (row 0 included)
        if c > 2:
            gaps[rng.integers(1, c)] = max_gap
        rows.append(np.cumsum(gaps))
        tf = np.where(rng.random(c) < 0.8, 1, rng.integers(2, 10**6 + 1, size=c))
        if c > 1:
            tf[rng.integers(0, c)] = 10**6
        tfs.append(tf.astype(np.int64))
    return np.concatenate(rows), np.concatenate(tfs)


def _encode(counts, rows, tf, norms, table, base=0):
    counts = np.asarray(counts, dtype=np.int64)
    sizes = postings.encoded_sizes(counts, rows, tf)
    nb = postings.n_blocks(counts)
    out = np.full(int(sizes.sum()), 0xAA, dtype=np.uint8)
    block_offset = np.full(int(nb.sum()), -7, dtype=np.int64)
    block_last = np.full(int(nb.sum()), -7, dtype=np.int64)
    block_max = np.full(int(nb.sum()), -7, dtype=np.float32)
    written = postings.encode(counts, rows, tf, out, base, block_offset, block_last, block_max, norms, table)
    assert written == sizes.sum()
    return out, sizes, block_offset, block_last, block_max


def _check_round_trip(counts, rows, tf, norms, table, base):
    out, sizes, block_offset, block_last, block_max = _encode(counts, rows, tf, norms, table, base)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    first = np.concatenate([[0], np.cumsum(postings.n_blocks(counts))])
    j = 0
    for t, c in enumerate(counts):
        got_rows, got_tf = postings.decode(out, int(starts[t]), c)
        np.testing.assert_array_equal(got_rows, rows[j : j + c])
        np.testing.assert_array_equal(got_tf, tf[j : j + c])
        x = tf[j : j + c].astype(np.float32) * table[norms[rows[j : j + c]]].astype(np.float32)
        assert x.dtype == np.float32
        assert block_max[first[t] : first[t + 1]].max() == x.max()  # the term's bound over all its blocks
        for b in range(first[t + 1] - first[t]):
            lo, hi = b * postings.BLOCK, min(c, (b + 1) * postings.BLOCK)
            assert block_last[first[t] + b] == rows[j + hi - 1]
            assert block_max[first[t] + b] == x[lo:hi].max()
            # a block's first posting decodes alone, from its offset and the previous block's last row
            pos = int(block_offset[first[t] + b]) - base
            prev = 0 if b == 0 else int(block_last[first[t] + b - 1])
            p, doc, f = postings._next(out, pos, len(out), prev)
            assert (doc, f) == (rows[j + lo], tf[j + lo])
        j += c
    assert starts[-1] == len(out)


def test_codes_round_trip_with_skip_blocks_and_bounds():
    rng = np.random.default_rng(0)
    B = postings.BLOCK
    counts = [1, B, B + 1, 2 * B, 2 * B + 1, 3, 1, 200] + list(rng.integers(1, 300, size=80))
    table = rng.uniform(0.05, 3.0, size=256).astype(np.float32)
    # small gaps: every row has its own random length code
    rows, tf = _random_postings(rng, counts, 40)
    norms = rng.integers(0, 256, size=int(rows.max()) + 1).astype(np.uint8)
    _check_round_trip(counts, rows, tf, norms, table, base=12345)


def test_codes_round_trip_with_gaps_up_to_2_31():
    rng = np.random.default_rng(1)
    B = postings.BLOCK
    counts = [1, B, B + 1, 5, 130, 1]
    rows, tf = _random_postings(rng, counts, 2**31 - 1)
    assert rows.max() > 2**36
    # one length for all rows (a stride-0 view: no array as long as the rows)
    norms = np.broadcast_to(np.uint8(17), (int(rows.max()) + 1,))
    table = np.linspace(0.1, 2.0, 256).astype(np.float32)
    _check_round_trip(counts, rows, tf, norms, table, base=0)
    # gaps that need 5 bytes, tf that needs 3: the sizes are the varint sizes
    out, sizes, *_ = _encode([2], np.array([2**31 - 1, 2 * (2**31 - 1)]), np.array([10**6, 1]), norms, table)
    assert sizes[0] == 5 + 3 + 5


def test_code_layout_is_gap_shifted_with_tf_one_flag():
    """The documented format itself: `(gap << 1) | (tf == 1)` then tf when not 1."""
    norms = np.zeros(1000, dtype=np.uint8)
    table = np.ones(256, dtype=np.float32)
    out, *_ = _encode([3], np.array([5, 6, 200]), np.array([1, 3, 1]), norms, table)
    assert out.tolist() == [(5 << 1) | 1, 1 << 1, 3, ((194 << 1) | 1) & 127 | 128, ((194 << 1) | 1) >> 7]


def test_decode_of_truncated_bytes_is_flagged():
    norms = np.zeros(10, dtype=np.uint8)
    out, *_ = _encode([1], np.array([3]), np.array([300]), norms, np.ones(256, dtype=np.float32))
    assert postings._next(out[:-1], 0, len(out) - 1, 0)[0] == -1  # tf cut short
    assert postings._next(np.full(20, 0xFF, dtype=np.uint8), 0, 20, 0)[0] == -1  # never-ending code


# ---------------------------------------------------------------- an independent oracle


def _write_stress_corpus(path: Path, source: Path, copies: int = 12) -> Path:
    """`copies` copies of the wiki-18 sample: more rows than a scoring window, and every
    passage tied with its copies; later copies get smaller ids, so ties go backwards."""
    lines = source.read_text(encoding="utf-8").splitlines()
    with path.open("w", encoding="utf-8") as f:
        for c in range(copies):
            for line in lines:
                rec = json.loads(line)
                rec["id"] = f"c{copies - 1 - c}-{rec['id']}"
                f.write(json.dumps(rec) + "\n")
    return path


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, shared_data):
    from search_envs.corpus import embedded_subset_path

    tmp = tmp_path_factory.mktemp("postings")
    wiki = shared_data / "corpus" / "wiki18_sample_1000.jsonl"
    out = {
        "embedded400": build_index(embedded_subset_path(400), "bm25", tmp / "emb", show_progress=False),
        "wiki18": build_index(wiki, "bm25", tmp / "wiki", show_progress=False),
        "wiki18x12": build_index(_write_stress_corpus(tmp / "x12.jsonl", wiki), "bm25", tmp / "x12", show_progress=False),
    }
    return out


def _questions(shared_data: Path) -> list[str]:
    """The real questions benchmarks/bm25_vs_pyserini.py runs (R1-Searcher's and DeepResearcher's)."""
    import pandas as pd

    qa = shared_data / "qa"
    out = []
    for name in ("hotpotqa_500", "2wiki_500", "musique_500", "bamboogle"):
        with (qa / f"r1searcher_{name}.jsonl").open(encoding="utf-8") as f:
            out += [json.loads(line)["question"] for line in f]
    out += [str(p[0]["content"]) for p in pd.read_parquet(qa / "deepresearcher_dev_7datasets.parquet")["prompt"]]
    return out


def _queries(engine, shared_data: Path, n_questions: int = 150) -> list[str]:
    qs = _questions(shared_data)
    qs = qs[:: max(1, len(qs) // n_questions)][:n_questions]
    store = engine.store
    titles = [p.title for p in store.get_many(range(0, len(store), max(1, len(store) // 40)))]
    common = sorted(engine.vocab, key=lambda t: -int(engine.df[engine.vocab[t]]))[:15]
    return qs + titles + common + [
        "paris paris paris france",
        "war war war war war war war war",
        "history of the united states " * 5,
        "xyzzyqq plughzz",  # unknown words only
        "xyzzyqq " + titles[0],  # unknown word and known ones
        "the of and a",  # stop words only: empty after analysis
        "",
        "   ",
        "?!",
        " ".join(common),  # every common term at once
        "1 2 3 10 100 1000",
    ]


class Oracle:
    """Every query's full score vector from the decoded postings, in plain numpy."""

    def __init__(self, engine):
        m = engine.manifest
        self.engine = engine
        n = len(engine.store)
        ids = [p.id for p in engine.store.get_many(range(n))]
        order = sorted(range(n), key=lambda r: ids[r].encode("utf-8"))  # Anserini sorts ties by docid
        self.tie_rank = np.empty(n, dtype=np.int64)
        self.tie_rank[order] = np.arange(n)
        self.n = n
        self.N = m["docs_with_terms"]
        self.bm25s = m["lengths"] == "exact"
        if self.bm25s:
            self.lengths = np.asarray(np.load(engine.directory / "bm25" / "lengths.npy"), dtype=np.float64)
        else:
            self.norms = np.asarray(np.load(engine.directory / "bm25" / "norms.npy"))
            self.table = norm_table(m, m["avgdl"])
        data = np.fromfile(engine.directory / "bm25" / "postings.bin", dtype=np.uint8)
        self.offsets = np.load(engine.directory / "bm25" / "offsets.npy")
        self.df = np.load(engine.directory / "bm25" / "df.npy")
        self.data = data
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def postings_of(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        if t not in self._decoded:
            rows, tf = postings.decode(self.data, int(self.offsets[t]), int(self.df[t]))
            assert (np.diff(rows) > 0).all() and rows[0] >= 0 and rows[-1] < self.n and (tf >= 1).all()
            self._decoded[t] = rows, tf
        return self._decoded[t]

    def scores(self, query: str) -> np.ndarray:
        vocab = self.engine.vocab
        found = Counter(vocab[w] for w in self.engine.analyzer(query) if w in vocab)
        total = np.zeros(self.n, dtype=np.float64)
        for t, count in found.items():
            rows, tf = self.postings_of(t)
            df = float(self.df[t])
            idf = np.log(1.0 + (self.N - df + 0.5) / (df + 0.5))
            if self.bm25s:
                k1, b = 1.5, 0.75
                avgdl = self.engine.manifest["avgdl"]
                s = count * (idf * tf / (tf + k1 * (1 - b + b * self.lengths[rows] / avgdl)))
            else:
                w = np.float32(count) * np.float32(idf)
                s = w - w / (np.float32(1) + tf.astype(np.float32) * self.table[self.norms[rows]])
                assert s.dtype == np.float32
            np.add.at(total, rows, s.astype(np.float64))
        return total

    def top(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.scores(query)
        s32 = s.astype(np.float32)
        hit = np.flatnonzero(s > 0)
        if self.bm25s:
            order = hit[np.lexsort((self.tie_rank[hit], -s[hit]))][:k]
            got = s[order]
        else:
            order = hit[np.lexsort((self.tie_rank[hit], -s32[hit]))][:k]
            got = s32[order]
        rows = np.full(k, -1, dtype=np.int64)
        scores = np.zeros(k, dtype=np.float64)
        rows[: len(order)], scores[: len(order)] = order, got
        return rows, scores


@pytest.mark.parametrize("name", ["embedded400", "wiki18", "wiki18x12"])
def test_kernel_equals_numpy_oracle_exactly(indexes, shared_data, name):
    engines = {prune: load_index(indexes[name], prune=prune) for prune in (True, False)}
    oracle = Oracle(engines[True])
    np.testing.assert_array_equal(np.asarray(engines[True].tie_rank), oracle.tie_rank)
    queries = _queries(engines[True], shared_data)
    assert len(queries) > 200
    expected = {q: oracle.top(q, max(KS)) for q in queries}
    pruned_less = 0
    for k in KS:
        for prune, engine in engines.items():
            rows, scores = engine.search_rows(queries, k)
            assert rows.shape == (len(queries), k) and scores.dtype == np.float32
            for q, r, s in zip(queries, rows, scores):
                er, es = expected[q]
                np.testing.assert_array_equal(r, er[:k], err_msg=f"{name} k={k} prune={prune} query={q!r}")
                np.testing.assert_array_equal(s, es[:k].astype(np.float32), err_msg=f"{name} k={k} prune={prune} query={q!r}")
            if prune and k == 10:
                pruned_less = engine.last_counters["scored"] < engine.last_counters["postings"]
    for q in ("the of and a", "", "xyzzyqq plughzz"):
        assert (expected[q][0] == -1).all()
    if len(oracle.tie_rank) > postings.WINDOW:  # pruning starts in the second window
        assert pruned_less  # it really skipped postings, and the results stayed exact
    for e in engines.values():
        e.close()


@pytest.mark.slow
def test_bm25s_scheme_equals_numpy_oracle(tmp_path, shared_data):
    from search_envs.corpus import embedded_subset_path

    out = build_index(embedded_subset_path(400), "bm25", tmp_path / "idx", scheme="bm25s", show_progress=False)
    engine = load_index(out)
    assert (engine.manifest["k1"], engine.manifest["b"], engine.manifest["lengths"]) == (1.5, 0.75, "exact")
    oracle = Oracle(engine)
    queries = _queries(engine, shared_data, 100)
    checked = 0
    for k in (1, 10, 100):
        rows, scores = engine.search_rows(queries, k)
        for q, r, s in zip(queries, rows, scores):
            er, es = oracle.top(q, k + 1)
            np.testing.assert_allclose(s, es[:k], rtol=1e-6, err_msg=q)
            assert ((r == -1) == (er[:k] == -1)).all(), q
            for i in range(k):  # a row must match where its score is not (nearly) tied with a neighbour's
                near = [es[j] for j in (i - 1, i + 1) if 0 <= j <= k and er[j] >= 0]
                if er[i] >= 0 and all(abs(es[i] - x) > 1e-6 * es[i] for x in near):
                    assert r[i] == er[i], (q, k, i)
                    checked += 1
    assert checked > 1000
    engine.close()


# ---------------------------------------------------------------- threads and batches


def test_threads_and_batch_sizes_give_identical_results(indexes, shared_data):
    one = load_index(indexes["wiki18x12"], n_threads=1)
    two = load_index(indexes["wiki18x12"], n_threads=2)
    queries = _queries(one, shared_data)
    rows, scores = one.search_rows(queries, 10)
    r2, s2 = two.search_rows(queries, 10)
    np.testing.assert_array_equal(rows, r2)
    np.testing.assert_array_equal(scores, s2)
    assert one.last_counters == two.last_counters  # the same work, split over threads
    for size in (1, 7, 64):
        parts = [two.search_rows(queries[i : i + size], 10) for i in range(0, len(queries), size)]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), rows, err_msg=f"batch {size}")
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), scores, err_msg=f"batch {size}")
    one.close()
    two.close()


# ---------------------------------------------------------------- corrupt and old indexes

_SEARCH_CORRUPT = r"""
import json, sys
from search_envs.index import BrokenIndexError, load_index
directory, queries = sys.argv[1], json.loads(sys.argv[2])
for prune in (True, False):
    try:
        engine = load_index(directory, verify=False, prune=prune)
    except BrokenIndexError as exc:
        print("REFUSED AT LOAD", exc)
        sys.exit(0)
    try:
        for k in (1, 10, 100):
            for size in (len(queries), 1):
                for i in range(0, len(queries), size):
                    engine.search_rows(queries[i : i + size], k)
        print("RESULTS")
    except BrokenIndexError as exc:  # the kernel's error names postings.bin, whatever file misled it
        assert "postings.bin" in str(exc), exc
        print("REFUSED", exc)
"""


def _corrupt(path: Path, pattern: str, rng: np.random.Generator) -> None:
    """Change `path` in place, at the same size (what sha256 verification would catch)."""
    if path.suffix == ".npy":
        arr = np.load(path)
        lo, hi = len(arr) // 3, 2 * len(arr) // 3
        if pattern == "ff":
            arr.view(np.uint8)[lo * arr.itemsize : hi * arr.itemsize] = 0xFF
        elif pattern == "random":
            arr.view(np.uint8)[lo * arr.itemsize : hi * arr.itemsize] = rng.integers(0, 256, (hi - lo) * arr.itemsize)
        elif pattern == "all-ff":
            arr.view(np.uint8)[:] = 0xFF
        elif pattern == "nudge":  # every value off by a little: plausible, in range, wrong
            arr += rng.integers(-3, 4, size=arr.shape).astype(arr.dtype)
        elif pattern == "beyond":  # ascending, the last one right, the others past the end of postings.bin
            arr[1:-1] = 2**40 + 8 * np.arange(len(arr) - 2)
        elif pattern == "last+1":
            arr[-1] += 1
        else:
            raise AssertionError(pattern)
        before = path.stat().st_size
        np.save(path, arr)
        assert path.stat().st_size == before
        return
    data = bytearray(path.read_bytes())
    lo, hi = len(data) // 3, 2 * len(data) // 3
    if pattern == "ff":
        data[lo:hi] = b"\xff" * (hi - lo)
    elif pattern == "random":
        data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    elif pattern == "flips":  # a few bytes changed anywhere
        for i in rng.integers(0, len(data), 200):
            data[i] ^= int(rng.integers(1, 256))
    else:
        raise AssertionError(pattern)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "name,pattern",
    [
        ("postings.bin", "ff"),
        ("postings.bin", "random"),
        ("block_offset.npy", "ff"),
        ("block_last.npy", "ff"),
        pytest.param("postings.bin", "flips", marks=pytest.mark.slow),
        pytest.param("block_offset.npy", "random", marks=pytest.mark.slow),
        pytest.param("block_offset.npy", "all-ff", marks=pytest.mark.slow),
        pytest.param("block_offset.npy", "nudge", marks=pytest.mark.slow),
        pytest.param("block_last.npy", "random", marks=pytest.mark.slow),
        pytest.param("block_last.npy", "nudge", marks=pytest.mark.slow),
        pytest.param("block_max.npy", "ff", marks=pytest.mark.slow),
        pytest.param("block_max.npy", "random", marks=pytest.mark.slow),
        pytest.param("df.npy", "random", marks=pytest.mark.slow),
        pytest.param("df.npy", "last+1", marks=pytest.mark.slow),
        pytest.param("offsets.npy", "nudge", marks=pytest.mark.slow),
        pytest.param("offsets.npy", "random", marks=pytest.mark.slow),
        pytest.param("offsets.npy", "beyond"),
        pytest.param("norms.npy", "random", marks=pytest.mark.slow),
        pytest.param("tie_rank.npy", "random", marks=pytest.mark.slow),
    ],
)
def test_corrupt_files_never_crash_the_process(indexes, shared_data, tmp_path, name, pattern):
    """Loaded without verification (SEARCH_ENVS_VERIFY=0, for multi-GB indexes), a file
    changed at the same size must give results or a BrokenIndexError, never a crash or a
    hang: searched in a child process, so a segfault fails this test, not pytest."""
    copy = tmp_path / "idx"
    shutil.copytree(indexes["wiki18x12"], copy)
    _corrupt(copy / "bm25" / name, pattern, np.random.default_rng(sum(map(ord, name + pattern))))
    clean = load_index(indexes["wiki18x12"])
    queries = _queries(clean, shared_data, 60)
    common = sorted(clean.vocab, key=lambda t: -int(clean.df[clean.vocab[t]]))[:40]
    clean.close()
    queries += [" ".join(common[i : i + 4]) for i in range(0, 40, 4)] + [" ".join(common)]
    proc = subprocess.run(
        [sys.executable, "-c", _SEARCH_CORRUPT, str(copy), json.dumps(queries)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert "RESULTS" in proc.stdout or "REFUSED" in proc.stdout
    if name == "postings.bin" and pattern == "ff":
        assert "REFUSED" in proc.stdout  # 0xFF bytes are never-ending codes: they cannot decode


def test_index_of_another_postings_format_is_refused(indexes, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(indexes["embedded400"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["postings_format"] == postings.FORMAT
    manifest["postings_format"] = "vbyte-gap-tf-0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BrokenIndexError, match="older version.*vbyte-gap-tf-0.*rebuild"):
        load_index(copy)
    del manifest["postings_format"]  # the float32 score-matrix index had none
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BrokenIndexError, match="older version.*score matrix"):
        load_index(copy)


# A term's bytes that end where readable memory ends (a postings.bin whose size is a
# multiple of the page size, its last term), and a corrupt code that runs up to that end
# while the term's df says more postings follow: the kernel must stop at the end.
_PAGE_END = r"""
import ctypes, mmap, sys
import numpy as np
from search_envs import postings

corrupt, guard = sys.argv[1] == "corrupt", sys.argv[2] == "guard"
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
page = mmap.PAGESIZE
addr = libc.mmap(None, 2 * page, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
assert addr not in (None, ctypes.c_void_p(-1).value)
if guard:  # the page after the postings: no access, as past the end of a memory-mapped file
    assert libc.mprotect(addr + page, page, 0) == 0
mem = np.frombuffer((ctypes.c_uint8 * page).from_address(addr), dtype=np.uint8)

n_docs = 10000
norms = np.zeros(n_docs, dtype=np.uint8)
table = np.ones(256, dtype=np.float32)
# term A (weight 5): rows 0 and 6000; term B (weight 0.01): rows 4500, 5000, 7000 in one skip block.
# Window 1 puts A's row 0 in the top 1; in window 2 B is non-essential and is looked up for A's row 6000.
counts = np.array([2, 3]); rows = np.array([0, 6000, 4500, 5000, 7000]); tf = np.ones(5, dtype=np.int64)
sizes = postings.encoded_sizes(counts, rows, tf)
code = np.empty(int(sizes.sum()), dtype=np.uint8)
bo, bl, bm = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.float32)
postings.encode(counts, rows, tf, code, 0, bo, bl, bm, norms, table)
assert sizes.tolist() == [3, 6]
if corrupt:  # B's 2nd and 3rd codes (4 bytes) become one 4-byte code: gap 0, tf 1
    code[sizes[0] + 2 :] = [0x81, 0x80, 0x80, 0x00]
data = mem[page - len(code) :]
data[:] = code
offsets = np.array([0, sizes[0], sizes.sum()], dtype=np.int64)
out_rows = np.full((1, 1), -1, dtype=np.int64)
out_scores = np.zeros((1, 1), dtype=np.float32)
status = postings.search(
    np.array([0, 2]), np.array([0, 1]), np.array([1, 1]), offsets, counts, data, np.array([5.0, 0.01], dtype=np.float32),
    norms, table, postings.SCHEME_LUCENE, np.array([0, 1, 2]), bo, bl, bm, True, np.arange(n_docs, dtype=np.uint32), 1,
    out_rows, out_scores, np.zeros(4, np.int64),
)
print("STATUS", status, out_rows[0, 0], out_scores[0, 0])
"""


def _page_end(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PAGE_END, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mmap/mprotect through libc")
def test_postings_at_the_end_of_memory_are_searched():
    clean = _page_end("clean", "guard")
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert "STATUS 0 0 2.5" in clean.stdout  # A's rows 0 and 6000 tie at 5 - 5 / 2: row 0 first
    corrupt = _page_end("corrupt", "open")  # memory readable past the end: the corruption is reported
    assert corrupt.returncode == 0, corrupt.stderr[-3000:]
    assert f"STATUS {postings.CORRUPT} -1 0.0" in corrupt.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mmap/mprotect through libc")
def test_corrupt_code_at_the_end_of_memory_is_reported_not_read_past():
    corrupt = _page_end("corrupt", "guard")
    assert corrupt.returncode == 0, f"exit {corrupt.returncode}: {corrupt.stderr[-3000:]}"
    assert f"STATUS {postings.CORRUPT} -1 0.0" in corrupt.stdout


# ---------------------------------------------------------------- the kernel alone, on random postings


def _random_index(rng: np.random.Generator, n_docs: int, n_terms: int, tie_heavy: bool):
    """Postings of `n_terms` terms over `n_docs` passages, dfs from 1 to n_docs."""
    dfs = np.unique(np.concatenate([[1, 2, postings.BLOCK, postings.BLOCK + 1, n_docs // 2, n_docs],
                                    np.minimum(n_docs, (n_docs / rng.uniform(1, n_docs, n_terms)).astype(int) + 1)]))
    dfs = rng.permutation(dfs)
    rows = np.concatenate([np.sort(rng.choice(n_docs, size=d, replace=False)) for d in dfs])
    if tie_heavy:  # tf 1 and a handful of lengths: exact ties everywhere
        tf = np.ones(len(rows), dtype=np.int64)
        norms = rng.integers(20, 23, n_docs).astype(np.uint8)
    else:
        tf = np.where(rng.random(len(rows)) < 0.7, 1, rng.integers(2, 60, len(rows)))
        norms = rng.integers(0, 254, n_docs).astype(np.uint8)  # 254, 255: see test_zero_scores_*
    table = norm_table({"k1": 0.9, "b": 0.4}, 40.0)
    out, sizes, block_offset, block_last, block_max = _encode(dfs, rows, tf, norms, table)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    weight = np.log(1 + (n_docs - dfs + 0.5) / (dfs + 0.5)).astype(np.float32)
    tie_rank = rng.permutation(n_docs).astype(np.uint32)
    first_block = np.concatenate([[0], np.cumsum(postings.n_blocks(dfs))])
    return dict(dfs=dfs, rows=rows, tf=tf, norms=norms, table=table, postings=out, offsets=offsets, weight=weight,
                tie_rank=tie_rank, first_block=first_block, block_offset=block_offset, block_last=block_last,
                block_max=block_max)


def _kernel_oracle(ix, terms, counts, k):
    starts = np.concatenate([[0], np.cumsum(ix["dfs"])])
    total = np.zeros(len(ix["tie_rank"]), dtype=np.float64)
    for t, c in zip(terms, counts):
        rows, tf = ix["rows"][starts[t] : starts[t + 1]], ix["tf"][starts[t] : starts[t + 1]]
        w = np.float32(c) * ix["weight"][t]
        s = w - w / (np.float32(1) + tf.astype(np.float32) * ix["table"][ix["norms"][rows]])
        np.add.at(total, rows, s.astype(np.float64))
    s32 = total.astype(np.float32)
    hit = np.flatnonzero(total > 0)
    order = hit[np.lexsort((ix["tie_rank"][hit], -s32[hit]))][:k]
    rows = np.full(k, -1, dtype=np.int64)
    scores = np.zeros(k, dtype=np.float32)
    rows[: len(order)], scores[: len(order)] = order, s32[order]
    return rows, scores


@pytest.mark.parametrize("tie_heavy", [False, True])
def test_kernel_on_random_postings_over_many_windows(tie_heavy):
    """Many windows (pruning starts in the second), skip blocks jumped both ways, exact ties."""
    rng = np.random.default_rng(7 + tie_heavy)
    n_docs = 9 * postings.WINDOW + 123
    ix = _random_index(rng, n_docs, 60, tie_heavy)
    n_terms = len(ix["dfs"])
    queries = [rng.choice(n_terms, size=rng.integers(1, 7), replace=False) for _ in range(150)]
    queries += [np.array([int(np.argmax(ix["dfs"]))]), np.array([int(np.argmin(ix["dfs"]))]), np.arange(n_terms)]
    counts = [rng.integers(1, 4, size=len(q)) for q in queries]
    qptr = np.concatenate([[0], np.cumsum([len(q) for q in queries])])
    qterm, qcount = np.concatenate(queries), np.concatenate(counts)
    skipped = 0
    for k in (1, 5, 50, 1000):
        expected = [_kernel_oracle(ix, q, c, k) for q, c in zip(queries, counts)]
        for prune in (True, False):
            out_rows = np.full((len(queries), k), -1, dtype=np.int64)
            out_scores = np.zeros((len(queries), k), dtype=np.float32)
            counters = np.zeros(4, dtype=np.int64)
            status = postings.search(
                qptr, qterm, qcount, ix["offsets"], ix["dfs"], ix["postings"], ix["weight"], ix["norms"], ix["table"],
                postings.SCHEME_LUCENE, ix["first_block"], ix["block_offset"], ix["block_last"], ix["block_max"], prune,
                ix["tie_rank"], k, out_rows, out_scores, counters,
            )
            assert status == 0
            for i, (er, es) in enumerate(expected):
                np.testing.assert_array_equal(out_rows[i], er, err_msg=f"k={k} prune={prune} query {i}")
                np.testing.assert_array_equal(out_scores[i], es, err_msg=f"k={k} prune={prune} query {i}")
            if prune:
                skipped += counters[0] - counters[1]
            else:
                assert counters[0] == counters[1]  # no pruning: every posting scored
    assert skipped > 0


# Every posting of two terms in every passage of one window, all passages of length
# code 255 (~2**31 tokens: 1 + tf * table rounds to 1 in float32, so each posting scores
# exactly 0). Only a corrupt norms.npy gives such lengths, but it must not corrupt memory.
_ZERO_SCORES = r"""
import sys
import numpy as np
from search_envs import postings
from search_envs.bm25_build import norm_table

n_terms = int(sys.argv[1])
n_docs = postings.WINDOW
code = sys.argv[2] == "255"
norms = np.full(n_docs, 255 if code else 100, dtype=np.uint8)  # 255: a length of ~2**31 tokens, 1 + tf * table == 1 in float32
table = norm_table({"k1": 0.9, "b": 0.4}, 40.0)
dfs = np.full(n_terms, n_docs)
rows = np.tile(np.arange(n_docs), n_terms)
tf = np.ones(len(rows), dtype=np.int64)
sizes = postings.encoded_sizes(dfs, rows, tf)
out = np.empty(int(sizes.sum()), dtype=np.uint8)
nb = int(postings.n_blocks(dfs).sum())
bo, bl, bm = np.zeros(nb, np.int64), np.zeros(nb, np.int64), np.zeros(nb, np.float32)
postings.encode(dfs, rows, tf, out, 0, bo, bl, bm, norms, table)
offsets = np.concatenate([[0], np.cumsum(sizes)])
weight = np.full(n_terms, 0.5, dtype=np.float32)
k = 10
out_rows = np.full((1, k), -1, dtype=np.int64); out_scores = np.zeros((1, k), dtype=np.float32)
status = postings.search(np.array([0, n_terms]), np.arange(n_terms), np.ones(n_terms, np.int64), offsets, dfs, out, weight, norms, table,
    0, np.concatenate([[0], np.cumsum(postings.n_blocks(dfs))]), bo, bl, bm, True, np.arange(n_docs, dtype=np.uint32), k, out_rows, out_scores, np.zeros(4, np.int64))
print("STATUS", status, out_rows[0].tolist(), out_scores[0].tolist())
"""


def test_all_postings_scored_in_one_window():
    proc = subprocess.run([sys.executable, "-c", _ZERO_SCORES, "2", "100"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STATUS 0 [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in proc.stdout  # all tied: passage order


def test_zero_scores_do_not_overflow_the_window_hits():
    proc = subprocess.run([sys.executable, "-c", _ZERO_SCORES, "2", "255"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    assert "STATUS 0 [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1]" in proc.stdout  # nothing scores above 0
