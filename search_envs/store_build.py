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
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain
from pathlib import Path

import zstandard
from tqdm.auto import tqdm

from search_envs.corpus import PASSAGE_WORDS, CorpusStats, bad_line, parsed_lines, read_blocks
from search_envs.store import DICT_SAMPLE, StoreWriter, compress_records, compressor, encode_record, train_dictionary
from search_envs.workers import cores, ordered_map, spawn_pool

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
    workers = workers or min(MAX_WORKERS, cores())
    size = path.stat().st_size
    pool = None
    if workers > 1 and size >= MIN_PARALLEL_BYTES:
        pool = spawn_pool(workers)  # started first: the workers import while this process parses the dictionary sample
        try:
            for _ in range(workers):
                pool.submit(int)
        except BrokenProcessPool:
            pass  # met again below, where the work falls back to this process
    bar = tqdm(total=size, desc="passage store", unit="B", unit_scale=True, disable=not show_progress)

    def encoded(block: bytes, lineno: int) -> list[bytes]:
        records, counts, error = _encode_block(block, lineno, words, skip_bad)
        _account(path, counts, error, stats)
        bar.update(len(block))
        return records

    try:
        with open(path, "rb") as f:
            blocks = read_blocks(f, digest)
            head: list[bytes] = []
            for block, lineno in blocks:
                head += encoded(block, lineno)
                if len(head) >= DICT_SAMPLE:
                    break
            early: list[list[bytes]] = []  # blocks encoded here while a worker trains the dictionary
            dictionary, workers_ok = _trained(head[:DICT_SAMPLE], pool, blocks, encoded, early)
            writer = StoreWriter(directory, dictionary)
            try:
                writer.write_records(head)
                del head
                jobs = chain(((records, 0, words, skip_bad, dictionary) for records in _drained(early)),
                             ((block, lineno, words, skip_bad, dictionary) for block, lineno in blocks))
                compressed = ordered_map(_compress_block, jobs, pool if workers_ok else None, workers + 2,
                                         "passage store: worker processes failed ({exc}); writing in this process")
                for frames, lengths, n_bytes, counts, error in compressed:
                    _account(path, counts, error, stats)
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


EARLY_BLOCKS = 16  # at most this many blocks (~64 MB) are encoded here while the dictionary trains


def _trained(head: list[bytes], pool: ProcessPoolExecutor | None, blocks: Iterator[Block],
             encoded: Callable[[bytes, int], list[bytes]], early: list[list[bytes]]) -> tuple[bytes, bool]:
    """(the dictionary trained on `head`, whether the workers work). With workers, a worker
    trains it (zstd's training holds the GIL) while this process encodes the next blocks
    into `early`, so neither core waits."""
    if pool is not None:
        try:
            training = pool.submit(train_dictionary, head)
            while not training.done() and len(early) < EARLY_BLOCKS:
                block = next(blocks, None)
                if block is None:
                    break
                early.append(encoded(*block))
            return training.result(), True
        except BrokenProcessPool as exc:
            warnings.warn(f"passage store: worker processes failed ({exc}); writing in this process", stacklevel=3)
    return train_dictionary(head), False


def _drained(items: list) -> Iterator:
    """The items of a list, first to last, each dropped from the list as it is taken."""
    items.reverse()
    while items:
        yield items.pop()


def _account(path: Path, counts: tuple[int, int, int], error: tuple[int, ValueError] | None, stats: CorpusStats) -> None:
    """Add a block's (records, bad lines, passages) to `stats`; raise its bad line's
    CorpusFormatError, if any."""
    stats.records += counts[0]
    stats.bad_lines += counts[1]
    stats.passages += counts[2]
    if error is not None:
        bad_line(path, *error, skip_bad=False, stats=stats)


def _encode_block(block: bytes, lineno: int, words: int, skip_bad: bool) -> tuple[list[bytes], tuple[int, int, int], tuple[int, ValueError] | None]:
    """(records, (records read, bad lines skipped, passages), first bad line and its error
    unless `skip_bad`: the block stops there) of a block."""
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
                return out, (records, bad, len(out)), (lineno, exc)
            bad += 1
            continue
        records += 1
    return out, (records, bad, len(out)), None


_compressor: tuple[bytes, zstandard.ZstdCompressor] | None = None  # a worker's, for the dictionary it last saw


def _compress_block(job: tuple[bytes | list[bytes], int, int, bool, bytes]) -> tuple:
    """(frames, their lengths, block bytes, (records, bad lines, passages), first error) of a
    block; a job of records already encoded (and counted) is only compressed."""
    global _compressor
    block, lineno, words, skip_bad, dictionary = job
    if _compressor is None or _compressor[0] != dictionary:
        _compressor = (dictionary, compressor(dictionary))
    if isinstance(block, list):
        records, counts, error, n_bytes = block, (0, 0, 0), None, 0
    else:
        records, counts, error = _encode_block(block, lineno, words, skip_bad)
        n_bytes = len(block)
    frames, lengths = compress_records(records, _compressor[1])
    return frames, lengths, n_bytes, counts, error
