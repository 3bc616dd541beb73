"""Worker processes for index builds: a spawn pool whose workers exit with the building
process, and an in-order map over it with a bounded number of jobs in flight that
finishes in this process when the workers cannot start."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain, islice
from typing import Any


def cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one, as in a container)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def exit_with_parent(parent: int) -> None:
    """A worker's watch: if the building process is killed (SIGKILL runs no cleanup), exit
    rather than wait forever to send a result nobody reads."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes, spawned (safe in a process with threads, such as a server),
    each exiting when this process is gone."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


def ordered_map(fn: Callable[[Any], Any], jobs: Iterable[Any], pool: ProcessPoolExecutor | None, depth: int,
                fallback: str) -> Iterator[Any]:
    """`fn` of each job, in order: on `pool` with at most `depth` jobs in flight (so results
    never pile up in memory), or in this process when `pool` is None. If the workers cannot
    start (spawn re-imports `__main__`, which fails for code read from stdin), warns
    `fallback` (formatted with `exc`) and does the jobs not done yet in this process."""
    jobs = iter(jobs)
    pending: deque[list] = deque()
    if pool is not None:

        def submit(job: Any) -> None:
            pending.append([job, None])
            pending[-1][1] = pool.submit(fn, job)

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
            warnings.warn(fallback.format(exc=exc), stacklevel=2)
    yield from map(fn, chain([job for job, _ in pending], jobs))
