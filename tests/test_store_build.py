"""The parallel passage-store build (`search_envs.store_build`) writes, byte for byte, the
files the store build first wrote, in-process or on worker processes, over real Wikipedia
text in every supported record layout, and names or counts bad lines as before."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import zstandard
from conftest import wait_until

import search_envs.corpus as corpus_mod
import search_envs.store_build as sb
import search_envs.workers as workers
from search_envs.corpus import CorpusFormatError, chunk_words, file_sha256
from search_envs.data import embedded_articles
from search_envs.store import DICT_BYTES, STORE_DICT, STORE_OFFSETS, STORE_PACKED, ZSTD_LEVEL, PassageStore

STORE_FILES = (STORE_PACKED, STORE_DICT, STORE_OFFSETS)


def reference_store(path: Path, directory: Path, dict_sample: int, skip_bad: bool = False, words: int = 100) -> tuple[int, int]:
    """The store build as first written (search_envs commit 855ea1d, corpus.iter_passages,
    parse_record, chunk_words and store.write_store): text-mode lines, np.linspace chunk
    bounds, json.dumps per record. Returns (records, bad lines)."""

    def chunks(text: str) -> list[str]:
        tokens = text.split()
        if not tokens:
            return []
        n = max(1, round(len(tokens) / words))
        bounds = np.linspace(0, len(tokens), n + 1).round().astype(int)
        return [" ".join(tokens[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def parse(rec: object, fallback_id: str) -> list[tuple[str, str, str]]:
        if not isinstance(rec, dict):
            raise ValueError("not an object")
        if "contents" in rec and isinstance(rec["contents"], str):
            doc_id = str(rec.get("id", fallback_id))
            title, _, text = rec["contents"].partition("\n")
            title = title.strip().strip('"').strip()
        elif isinstance(rec.get("text"), str) and "title" in rec:
            doc_id, title, text = str(rec.get("id", fallback_id)), str(rec["title"]), rec["text"]
        elif isinstance(rec.get("wikipedia_title"), str) and isinstance(rec.get("text"), list):
            doc_id, title = str(rec.get("wikipedia_id") or rec["wikipedia_title"]), rec["wikipedia_title"]
            paragraphs = [p.strip() for p in rec["text"]]
            if paragraphs and paragraphs[0] == title.strip():
                paragraphs = paragraphs[1:]
            text = " ".join(p.removeprefix("BULLET::::").strip() for p in paragraphs if p and not p.startswith("Section::::"))
        else:
            raise ValueError("unknown layout")
        parts = chunks(text)
        if len(parts) <= 1:
            return [(doc_id, title, " ".join(text.split()))] if parts else []
        return [(f"{doc_id}-{i}", title, c) for i, c in enumerate(parts)]

    records, n_records, bad = [], 0, 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                passages = parse(json.loads(line), str(lineno - 1))
            except ValueError:
                if not skip_bad:
                    raise CorpusFormatError(f"{path}:{lineno}") from None
                bad += 1
                continue
            n_records += 1
            records += [json.dumps(list(p), ensure_ascii=False).encode("utf-8") for p in passages]
    head = records[:dict_sample]
    try:
        dictionary = zstandard.train_dictionary(DICT_BYTES, head).as_bytes() if len(head) >= 64 else b""
    except zstandard.ZstdError:
        dictionary = b""
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True,
                                    dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None)
    frames = [cctx.compress(r) for r in records]
    (directory / STORE_DICT).write_bytes(dictionary)
    (directory / STORE_PACKED).write_bytes(b"".join(frames))
    np.save(directory / STORE_OFFSETS, np.concatenate([[0], np.cumsum([len(x) for x in frames])]).astype(np.int64))
    return n_records, bad


def mixed_corpus(path: Path, n: int = 3000, bad_every: int = 0, seed: int = 0) -> Path:
    """Real Wikipedia leads in all three layouts, short and long (several chunks), with
    odd whitespace, escapes, blank lines and, every `bad_every` lines, a bad line."""
    rng = random.Random(seed)
    articles = embedded_articles()
    spaces = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u2028", "\u3000"]
    lines = []
    for i in range(n):
        a = articles[(i * 7) % len(articles)]
        text = a.text
        if rng.random() < 0.2:  # long: several ~100-word chunks
            text = " ".join(articles[(i * 7 + k) % len(articles)].text for k in range(rng.randint(2, 8)))
        if rng.random() < 0.2:
            text = "".join(w + rng.choice(spaces) for w in text.split())
        r = rng.random()
        if r < 0.6:
            lines.append(json.dumps({"id": str(i), "contents": f'"{a.title}"\n{text}'}, ensure_ascii=rng.random() < 0.5))
        elif r < 0.75:
            lines.append(json.dumps({"id": i, "title": a.title, "text": text}, ensure_ascii=False))
        elif r < 0.9:
            paragraphs = [a.title, "Section::::History.", "BULLET::::- " + text, "", text]
            lines.append(json.dumps({"wikipedia_id": str(i) if r < 0.85 else "", "wikipedia_title": a.title, "text": paragraphs}))
        elif r < 0.95:
            lines.append(json.dumps({"title": a.title, "text": text + " \x07 \x7f 😀 \"q\" \\"}, ensure_ascii=False))
        else:
            lines.append(rng.choice(["", "   ", json.dumps({"id": str(i), "contents": ""})]))
        if bad_every and i % bad_every == bad_every - 1:
            lines.append(rng.choice(["{not json", "[1, 2]", '{"foo": 1}', '"text"', '{"contents": 5}']))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks of ~32 KB, a 300-record dictionary sample, workers for any corpus size."""
    monkeypatch.setattr(corpus_mod, "BLOCK_BYTES", 32 << 10)
    monkeypatch.setattr(sb, "DICT_SAMPLE", 300)
    monkeypatch.setattr(sb, "MIN_PARALLEL_BYTES", 0)


def same_files(a: Path, b: Path) -> None:
    for name in STORE_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
def test_worker_pool_and_in_process_builds_equal_the_original_byte_for_byte(tmp_path, small_blocks):
    corpus = mixed_corpus(tmp_path / "mixed.jsonl", bad_every=97)
    dirs = {name: tmp_path / name for name in ("reference", "one", "pool")}
    for d in dirs.values():
        d.mkdir()
    records, bad = reference_store(corpus, dirs["reference"], dict_sample=300, skip_bad=True)
    one = sb.write_corpus_store(corpus, dirs["one"], skip_bad=True, workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the workers must really run: no fallback warning
        pool = sb.write_corpus_store(corpus, dirs["pool"], skip_bad=True, workers=2)
    assert corpus.stat().st_size > 30 * (32 << 10)  # many blocks beyond the dictionary sample
    assert (one.records, one.bad_lines) == (pool.records, pool.bad_lines) == (records, bad)
    assert bad == 3000 // 97
    assert one.passages == pool.passages > records  # long texts made several passages
    assert one.sha256 == pool.sha256 == file_sha256(corpus)
    same_files(dirs["reference"], dirs["one"])
    same_files(dirs["reference"], dirs["pool"])
    store = PassageStore(dirs["pool"])
    assert len(store) == pool.passages and any("-" in p.id for p in store.get_many(range(len(store))))
    store.close()


def test_default_build_of_a_small_corpus_stays_in_process_and_equals_the_original(tmp_path):
    corpus = mixed_corpus(tmp_path / "small.jsonl", n=400)
    (tmp_path / "reference").mkdir()
    (tmp_path / "store").mkdir()
    records, _ = reference_store(corpus, tmp_path / "reference", dict_sample=sb.DICT_SAMPLE)
    stats = sb.write_corpus_store(corpus, tmp_path / "store")
    assert stats.records == records
    same_files(tmp_path / "reference", tmp_path / "store")


@pytest.mark.slow
def test_bad_lines_in_different_worker_blocks(tmp_path, small_blocks):
    """skip_bad counts the bad lines of every block; without it the error names the first
    bad line's number, however far into the corpus (a later block) it is."""
    corpus = mixed_corpus(tmp_path / "bad.jsonl", n=3000, bad_every=500)
    lines = corpus.read_text(encoding="utf-8").split("\n")
    first_bad = next(i for i, line in enumerate(lines, 1) if line.strip() and _bad(line))
    assert sum(len(x.encode()) + 1 for x in lines[: first_bad - 1]) > 4 * (32 << 10)  # past the dictionary sample
    (tmp_path / "s").mkdir()
    stats = sb.write_corpus_store(corpus, tmp_path / "s", skip_bad=True, workers=2)
    assert stats.bad_lines == sum(1 for line in lines if line.strip() and _bad(line)) == 6
    with pytest.raises(CorpusFormatError, match=rf"bad\.jsonl:{first_bad}: "):
        sb.write_corpus_store(corpus, tmp_path / "s", workers=2)
    # a bad line inside the dictionary sample is named as well
    lines.insert(10, "{oops")
    corpus.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=r"bad\.jsonl:11: Expecting property name"):
        sb.write_corpus_store(corpus, tmp_path / "s", workers=2)


def _bad(line: str) -> bool:
    try:
        rec = json.loads(line)
    except ValueError:
        return True
    return not isinstance(rec, dict) or not (isinstance(rec.get("contents"), str) or "title" in rec or "wikipedia_title" in rec)


def test_line_ends_and_undecodable_lines_count_as_text_mode_reading_does(tmp_path):
    """\\r\\n and lone \\r end lines as in text mode, so bad-line numbers do not move; a line
    that is not UTF-8 is a bad line named by number (it used to stop the build with a
    UnicodeDecodeError naming nothing)."""
    good = json.dumps({"id": "a", "contents": '"A"\nalpha beta'}).encode()
    corpus = tmp_path / "ends.jsonl"
    corpus.write_bytes(good + b"\r\n" + good + b"\r" + good + b"\n\r\n" + b"{bad\r\n" + good)
    with pytest.raises(CorpusFormatError, match=r"ends\.jsonl:5: "):
        sb.write_corpus_store(corpus, tmp_path)
    with open(corpus, encoding="utf-8") as f:
        assert [i for i, line in enumerate(f, 1) if line.startswith("{bad")] == [5]
    stats = sb.write_corpus_store(corpus, tmp_path, skip_bad=True)
    assert (stats.records, stats.passages, stats.bad_lines) == (4, 4, 1)
    corpus.write_bytes(good + b"\n" + b'{"id": "x", "contents": "\xff"}\n' + good + b"\n")
    with pytest.raises(CorpusFormatError, match=r"ends\.jsonl:2: 'utf-8' codec can't decode"):
        sb.write_corpus_store(corpus, tmp_path)
    stats = sb.write_corpus_store(corpus, tmp_path, skip_bad=True)
    assert (stats.records, stats.bad_lines) == (2, 1)
    store = PassageStore(tmp_path)
    assert [p.id for p in store.get_many([0, 1])] == ["a", "a"]
    store.close()


def test_empty_corpus_writes_an_empty_store(tmp_path):
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text("\n  \n", encoding="utf-8")
    stats = sb.write_corpus_store(corpus, tmp_path)
    assert (stats.records, stats.passages) == (0, 0)
    assert np.load(tmp_path / STORE_OFFSETS).tolist() == [0]


def test_chunk_bounds_equal_numpy_linspace():
    for words in (1, 3, 50, 100, 128):
        for n in range(0, 1200):
            text = " ".join(f"w{i}" for i in range(n))
            got = [len(c.split()) for c in chunk_words(text, words)]
            if n == 0:
                assert got == []
                continue
            k = max(1, round(n / words))
            bounds = np.linspace(0, n, k + 1).round().astype(int)
            assert got == np.diff(bounds).tolist(), (words, n)
            assert chunk_words(" \t" + text.replace(" ", "\u00a0 ") + "\n", words) == chunk_words(text, words)


@pytest.mark.parametrize("train_ok", [False, True])
def test_workers_that_cannot_start_fall_back_to_this_process(tmp_path, small_blocks, monkeypatch, train_ok):
    """Spawned workers die at start when `__main__` cannot be re-imported (a script read
    from stdin): the store is still written, in this process, with the same bytes, whether
    the pool breaks at the dictionary training or at the first block."""
    import concurrent.futures.process as cfp
    from concurrent.futures import Future

    class DeadPool:
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, fn, *args, **kwargs):
            if train_ok and fn is sb.train_dictionary:
                done = Future()
                done.set_result(fn(*args))
                return done
            raise cfp.BrokenProcessPool("A child process terminated abruptly")

        def shutdown(self, *args, **kwargs):
            pass

    corpus = mixed_corpus(tmp_path / "c.jsonl", n=800)
    (tmp_path / "one").mkdir()
    (tmp_path / "fallback").mkdir()
    one = sb.write_corpus_store(corpus, tmp_path / "one", workers=1)
    monkeypatch.setattr(workers, "ProcessPoolExecutor", DeadPool)
    with pytest.warns(UserWarning, match="worker processes failed .*; writing in this process"):
        fallback = sb.write_corpus_store(corpus, tmp_path / "fallback", workers=2)
    assert (fallback.records, fallback.passages, fallback.sha256) == (one.records, one.passages, one.sha256)
    same_files(tmp_path / "one", tmp_path / "fallback")


def test_blocks_encoded_while_a_worker_trains_the_dictionary_keep_their_place(tmp_path, small_blocks, monkeypatch):
    """While a worker trains the dictionary this process encodes the next blocks; they are
    compressed and written in corpus order, before the blocks the workers parse. (A thread
    pool stands in for the processes so that the training can be made slow.)"""
    from concurrent.futures import ThreadPoolExecutor

    encoding = []  # the list this process encodes blocks into while the dictionary trains

    def slow_training(head):
        """Trains once this process has encoded as many blocks as it may meanwhile: a slow
        training, however fast or loaded this machine."""
        wait_until(lambda: len(encoding[0]) >= sb.EARLY_BLOCKS, 60, "blocks encoded while the dictionary trains")
        return sb.train_dictionary(head)

    class SlowTrainingPool:
        """Training on one thread, blocks on another (a compressor is one thread's)."""

        def __init__(self, workers, **kwargs):
            self.trainer, self.worker = ThreadPoolExecutor(1), ThreadPoolExecutor(1)

        def submit(self, fn, *args):
            if fn is sb.train_dictionary:
                return self.trainer.submit(slow_training, *args)
            return self.worker.submit(fn, *args)

        def shutdown(self, *args, **kwargs):
            self.trainer.shutdown()
            self.worker.shutdown()

    trained = sb._trained
    early_blocks = []

    def spy(head, pool, blocks, encoded, early):
        encoding.append(early)
        out = trained(head, pool, blocks, encoded, early)
        early_blocks.append(len(early))
        return out

    corpus = mixed_corpus(tmp_path / "c.jsonl", n=1500, bad_every=97)
    (tmp_path / "reference").mkdir()
    (tmp_path / "store").mkdir()
    records, bad = reference_store(corpus, tmp_path / "reference", dict_sample=300, skip_bad=True)
    monkeypatch.setattr(workers, "ProcessPoolExecutor", SlowTrainingPool)
    monkeypatch.setattr(sb, "_trained", spy)
    stats = sb.write_corpus_store(corpus, tmp_path / "store", skip_bad=True, workers=2)
    assert early_blocks == [sb.EARLY_BLOCKS]
    assert (stats.records, stats.bad_lines) == (records, bad)
    same_files(tmp_path / "reference", tmp_path / "store")


def test_workers_exit_when_the_build_is_killed(tmp_path):
    """SIGKILL runs no cleanup: a worker blocked sending its result would wait forever, so
    each worker watches its parent and exits when it is gone."""
    import signal
    import subprocess
    import sys

    script = (
        "import multiprocessing, os, sys, time\n"
        "from search_envs.workers import exit_with_parent\n"
        "def work(parent):\n"
        "    exit_with_parent(parent)\n"
        "    open(sys.argv[1], 'w').close()\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    p = multiprocessing.get_context('spawn').Process(target=work, args=(os.getpid(),))\n"
        "    p.start()\n"
        "    print(p.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    (tmp_path / "builder.py").write_text(script)
    ready = tmp_path / "ready"
    builder = subprocess.Popen([sys.executable, str(tmp_path / "builder.py"), str(ready)], stdout=subprocess.PIPE, text=True)
    worker = int(builder.stdout.readline())
    wait_until(ready.exists, 60, "the worker started")
    assert _alive(worker)
    builder.send_signal(signal.SIGKILL)
    builder.wait(timeout=30)
    wait_until(lambda: not _alive(worker), 30, "the worker exited after its parent was killed")  # it looks every 1 s


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_progress_bar_counts_corpus_bytes(tmp_path, capsys):
    corpus = mixed_corpus(tmp_path / "c.jsonl", n=200)
    sb.write_corpus_store(corpus, tmp_path, show_progress=True)
    err = capsys.readouterr().err
    assert "passage store: 100%" in err
    sb.write_corpus_store(corpus, tmp_path, show_progress=False)
    assert "passage store" not in capsys.readouterr().err
