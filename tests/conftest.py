"""Shared fixtures. Heavy resources are session-scoped and built once into a
per-run cache, so the suite pays for each real index or model only once."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from search_envs.data import shared_data_dir

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> NoReturn:
    """The test cannot run here for lack of `what` (data, a package it needs): skipped on a
    developer's machine, failed under CI=true so that CI never passes on a reduced suite."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: missing data or packages fail instead of skipping)", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail saying `what` after `timeout` seconds. For waiting
    on what another thread or process does, instead of sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The papers' data samples (`SEARCH_ENVS_DATA`); `missing` when absent."""
    path = shared_data_dir()
    if path is None:
        missing(f"no shared data folder (SEARCH_ENVS_DATA={os.environ.get('SEARCH_ENVS_DATA', '')!r})")
    return path


@pytest.fixture(scope="session")
def bm25_engine():
    """BM25 over the embedded Wikipedia corpus (built into the cache on first use)."""
    from search_envs.engines import open_engine

    engine = open_engine("bm25")
    engine.search(["warm up"], 1)  # compiles the numba kernels now (~10 s in a fresh checkout), not in a timed test
    yield engine
    engine.close()


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache directory for tests that must not reuse built indexes."""
    monkeypatch.setenv("SEARCH_ENVS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def minilm_passages():
    """(encoder, passages, vectors): the real MiniLM and its normalised vectors of the first
    240 passages of the embedded corpus, encoded once for every test that lays out a
    Search-R1-style faiss index (tests/searchr1_layout.py)."""
    from search_envs.engines.dense import load_encoder
    from tests.searchr1_layout import MINILM, encode_passages, first_passages

    encoder = load_encoder(MINILM)
    passages = first_passages(240)
    return encoder, passages, encode_passages(encoder, passages)
