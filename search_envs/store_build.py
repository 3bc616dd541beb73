"""Writing a corpus file into a `zstd` passage store, on all cores.

The main process reads the corpus in blocks of whole lines (hashing it on the way, so
the build needs no second read for the manifest's sha256), parses the first blocks
itself until it has the `DICT_SAMPLE` records the zstd dictionary is trained on, then
hands each further block to a worker process that parses, chunks, encodes and
compresses it and returns the frames and their lengths; the main process writes them
in corpus order. The files are byte for byte those of `write_store(iter_passages(...))`.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain, islice
from pathlib import Path

import numpy as np
import zstandard
from tqdm.auto import tqdm

from search_envs.corpus import PASSAGE_WORDS, CorpusStats, bad_line, parsed_lines, read_blocks
from search_envs.store import DICT_SAMPLE, StoreWriter, compress_records, compressor, encode_record, train_dictionary

MIN_PARALLEL_BYTES = 32 << 20  # smaller corpora are written in this process: starting workers costs more
MAX_WORKERS = 16  # past this the main process's reads and writes are the bottleneck

Block = tuple[bytes, int]  # a block of whole corpus lines and the number of its first line


def write_corpus_store(
    path: str | Path, directory: str | Path, words: int = PASSAGE_WORDS, skip_bad: bool = False,
    show_progress: bool = False, workers: int = 0,
) -> CorpusStats:
    """Write the passages of the jsonl corpus `path` into `directory` as a `zstd` store.

    Returns the counts and the corpus file's sha256. A bad line raises CorpusFormatError
    naming file:line, or with `skip_bad` is skipped and counted. `workers`: processes
    (0: the available cores, at most `MAX_WORKERS`)."""
    path, stats, digest = Path(path), CorpusStats(), hashlib.sha256()
    workers = workers or min(MAX_WORKERS, len(os.sched_getaffinity(0)))
    size = path.stat().st_size
    pool = None
    if workers > 1 and size >= MIN_PARALLEL_BYTES:
        # spawn: safe in a process with threads (a server). Started first so the workers
        # import while this process parses the dictionary sample.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            for _ in range(workers):
                pool.submit(int)
        except BrokenProcessPool:
            pass  # `_compressed` meets it again and falls back to this process
    bar = tqdm(total=size, desc="passage store", unit="B", unit_scale=True, disable=not show_progress)
    try:
        with open(path, "rb") as f:
            blocks = read_blocks(f, digest)
            head: list[bytes] = []
            for block, lineno in blocks:
                records, counts, error = _encode_block(block, lineno, words, skip_bad)
                _account(path, len(records), counts, error, stats)
                head += records
                bar.update(len(block))
                if len(head) >= DICT_SAMPLE:
                    break
            dictionary = train_dictionary(head[:DICT_SAMPLE])
            writer = StoreWriter(directory, dictionary)
            try:
                writer.write_records(head)
                del head
                jobs = ((block, lineno, words, skip_bad, dictionary) for block, lineno in blocks)
                for frames, lengths, n_bytes, (counts, error) in _compressed(jobs, pool, workers + 2):
                    _account(path, len(lengths), counts, error, stats)
                    writer.write(frames, lengths)
                    bar.update(n_bytes)
            finally:
                writer.close()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    stats.sha256 = digest.hexdigest()
    return stats


def _account(path: Path, passages: int, counts: tuple[int, int], error: tuple[int, ValueError] | None, stats: CorpusStats) -> None:
    """Add a block's counts to `stats`; raise its bad line's CorpusFormatError, if any."""
    stats.records += counts[0]
    stats.passages += passages
    stats.bad_lines += counts[1]
    if error is not None:
        bad_line(path, *error, skip_bad=False, stats=stats)


def _encode_block(block: bytes, lineno: int, words: int, skip_bad: bool) -> tuple[list[bytes], tuple[int, int], tuple[int, ValueError] | None]:
    """(records, (records read, bad lines skipped), first bad line and its error unless
    `skip_bad`: the block stops there) of a block."""
    out: list[bytes] = []
    records = bad = 0
    for lineno, parts in parsed_lines(block, lineno, words):
        try:
            if isinstance(parts, ValueError):
                raise parts
            doc_id, title, chunks = parts
            if len(chunks) == 1:
                out.append(encode_record(doc_id, title, chunks[0]))
            else:  # a record's passages are all written or none (a text that cannot be encoded)
                out += [encode_record(f"{doc_id}-{i}", title, chunk) for i, chunk in enumerate(chunks)]
        except ValueError as exc:  # UnicodeEncodeError: a lone surrogate from a \ud800 escape
            if not skip_bad:
                return out, (records, bad), (lineno, exc)
            bad += 1
            continue
        records += 1
    return out, (records, bad), None


_compressor: tuple[bytes, zstandard.ZstdCompressor] | None = None  # a worker's, for the dictionary it last saw


def _compress_block(job: tuple[bytes, int, int, bool, bytes]) -> tuple[bytes, np.ndarray, int, tuple]:
    """(frames, their lengths, block bytes, (record and bad-line counts, first error)) of a block."""
    global _compressor
    block, lineno, words, skip_bad, dictionary = job
    if _compressor is None or _compressor[0] != dictionary:
        _compressor = (dictionary, compressor(dictionary))
    records, counts, error = _encode_block(block, lineno, words, skip_bad)
    frames, lengths = compress_records(records, _compressor[1])
    return frames, lengths, len(block), (counts, error)


def _compressed(jobs: Iterator[tuple], pool: ProcessPoolExecutor | None, depth: int) -> Iterator[tuple]:
    """`_compress_block` of each job, in order: on `pool` with at most `depth` blocks in
    flight (so memory stays bounded), or in this process. If the worker processes cannot
    start (spawn re-imports `__main__`, which fails for code read from stdin), the blocks
    not done yet are compressed in this process."""
    pending: deque[list] = deque()
    if pool is not None:

        def submit(job: tuple) -> None:
            pending.append([job, None])
            pending[-1][1] = pool.submit(_compress_block, job)

        try:
            for job in islice(jobs, depth):
                submit(job)
            while pending:
                result = pending[0][1].result()
                pending.popleft()
                for job in islice(jobs, 1):
                    submit(job)
                yield result
            return
        except BrokenProcessPool as exc:
            warnings.warn(f"passage store: worker processes failed ({exc}); compressing in this process", stacklevel=2)
    yield from map(_compress_block, chain([job for job, _ in pending], jobs))
