"""One place decides what an engine spec means (`open_engine`), and engine classes own their parameters."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import gymnasium as gym
import pytest

import search_envs
from search_envs import SearchEngine, open_engine
from search_envs.engines.bm25 import BM25Engine
from search_envs.engines.dense import DenseEngine
from search_envs.engines.hybrid import HybridEngine
from search_envs.engines.remote import RemoteEngine
from search_envs.index import cached_index_dir, engine_params
from search_envs.server import running_server


@pytest.fixture(scope="module")
def server(bm25_engine):
    with running_server(bm25_engine) as url:
        yield url


def test_open_engine_takes_a_server_url(server, bm25_engine):
    engine = open_engine(server)
    try:
        assert isinstance(engine, RemoteEngine)
        got = engine.search(["Who wrote Hamlet?"], 3)[0]
        assert [d.id for d in got] == [d.id for d in bm25_engine.search(["Who wrote Hamlet?"], 3)[0]]
    finally:
        engine.close()
    with pytest.raises(ValueError, match="takes no corpus"):
        open_engine(server, corpus="embedded")


def test_open_engine_returns_a_ready_engine_and_refuses_options_with_it(bm25_engine):
    assert open_engine(bm25_engine) is bm25_engine
    with pytest.raises(ValueError, match="ready SearchEngine"):
        open_engine(bm25_engine, n_threads=2)


def test_make_vec_takes_a_server_url_as_engine(server, bm25_engine):
    vec = search_envs.make_vec("SearchEnvs/WikiBM25-v0", 2, engine=server)
    try:
        assert isinstance(vec.engine, RemoteEngine)
        vec.reset(seed=0)
        _, _, _, _, infos = vec.step(["<search>Who wrote Hamlet?</search>"] * 2)
        assert "search_errors" not in infos and "search_error" not in infos
        want = [d.id for d in bm25_engine.search(["Who wrote Hamlet?"], 3)[0]]
        assert list(infos["doc_ids"][0][0]) == want
    finally:
        vec.close()


def test_gym_make_and_open_engine_agree_on_a_url(server):
    env = gym.make("SearchEnvs/WikiBM25-v0", engine=server)
    try:
        assert isinstance(env.unwrapped.engine, RemoteEngine)
    finally:
        env.close()


def test_engine_classes_name_parameters_their_code_takes():
    for cls in (BM25Engine, DenseEngine):
        build = set(inspect.signature(cls.build).parameters) - {"directory", "show_progress"}
        assert set(cls.build_params) == build, cls
        load = set(inspect.signature(cls.__init__).parameters) - {"self", "directory", "manifest"}
        assert set(cls.load_params) == load, cls
    assert set(HybridEngine.load_params) == set(inspect.signature(HybridEngine.__init__).parameters) - {"self", "bm25", "dense"}
    build, load = engine_params("hybrid")
    assert {"k1", "model", "passage_words"} <= build and {"rrf_k", "n_threads", "ef_search"} <= load


def test_search_time_settings_do_not_change_the_cache_name(tmp_cache):
    assert cached_index_dir("dense", None, ef_search=10, batch_size=8) == cached_index_dir("dense", None)
    assert cached_index_dir("dense", None, hnsw_m=8) != cached_index_dir("dense", None)


def test_hybrid_module_does_not_import_the_index_module():
    """index.py loads hybrid indexes; hybrid.py must not import index.py back (no import loop)."""
    source = Path(inspect.getfile(HybridEngine)).read_text()
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert "search_envs.index" not in imported and "search_envs.engines" not in imported


def test_unknown_spec_is_a_clear_error():
    with pytest.raises(ValueError, match="retrieval server URL"):
        open_engine("ftp://example.org")
    with pytest.raises(ValueError, match="unknown engine kind"):
        open_engine(42)  # type: ignore[arg-type]
    assert issubclass(RemoteEngine, SearchEngine)
