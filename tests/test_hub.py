"""`search-envs data get`: the real huggingface_hub client over real HTTP against a
fake hub on 127.0.0.1 (tests/hub_server.py), run as the command a user runs."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_envs import hub
from tests.hub_server import FakeHub, start

NQ = b"".join(json.dumps({"id": f"test_{i}", "question": f"who wrote book {i}?", "golden_answers": [f"Author {i}"]}).encode() + b"\n" for i in range(50))
BAMBOOGLE = b'{"id": "b0", "question": "Who was president when the Eiffel tower opened?", "golden_answers": ["Sadi Carnot"]}\n'


@pytest.fixture()
def fake_hub():
    hub_ = FakeHub()
    server = start(hub_)
    yield hub_
    server.shutdown()
    server.server_close()


def cli(*args: str, endpoint: str, env_extra: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "search_envs.cli", "data", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def popen(*args: str, endpoint: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1"})
    return subprocess.Popen([sys.executable, "-m", "search_envs.cli", "data", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_get_test_sets_is_idempotent_and_usable(fake_hub, tmp_path):
    fake_hub.add(hub.FLASHRAG_REPO, "nq/test.jsonl", NQ, lfs=False)  # small files live in git: sha1 ETag
    fake_hub.add(hub.FLASHRAG_REPO, "bamboogle/test.jsonl", BAMBOOGLE, lfs=False)
    r = cli("get", "nq", "bamboogle", "--dir", str(tmp_path), endpoint=fake_hub.url)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "nq" / "nq" / "test.jsonl").read_bytes() == NQ
    assert hub.status(hub.ITEMS["bamboogle"], tmp_path) == "present"
    assert len(fake_hub.gets("nq/test.jsonl")) == 1
    before = len(fake_hub.log)
    r = cli("get", "nq", "bamboogle", "--dir", str(tmp_path), endpoint=fake_hub.url)
    assert r.returncode == 0 and "nq: present" in r.stdout
    assert len(fake_hub.log) == before  # nothing asked of the hub the second time

    from search_envs.datasets import load_tasks

    tasks = load_tasks(str(hub.item_path("nq", tmp_path)))
    assert len(tasks) == 50 and tasks[3].answers == ("Author 3",)
    listing = cli("list", "--dir", str(tmp_path), endpoint=fake_hub.url).stdout
    assert "nq" in listing and "present" in listing and "wiki-18-e5-flat   absent" in listing


def test_corpus_is_gunzipped_and_index_parts_concatenated(fake_hub, tmp_path):
    corpus = b"".join(json.dumps({"id": str(i), "contents": f'"T{i}"\nsome text {i}'}).encode() + b"\n" for i in range(2000))
    fake_hub.add("PeterJinGo/wiki-18-corpus", "wiki-18.jsonl.gz", gzip.compress(corpus))
    index = os.urandom(300_000)
    fake_hub.add("PeterJinGo/wiki-18-e5-index", "part_aa", index[:200_000])
    fake_hub.add("PeterJinGo/wiki-18-e5-index", "part_ab", index[200_000:])
    r = cli("get", "wiki-18", "wiki-18-e5-flat", "--dir", str(tmp_path), endpoint=fake_hub.url)
    assert r.returncode == 0, r.stderr
    assert hub.item_path("wiki-18", tmp_path).read_bytes() == corpus
    assert hub.item_path("wiki-18-e5-flat", tmp_path).read_bytes() == index
    assert not (tmp_path / "wiki-18-e5-flat" / "part_aa").exists()  # parts dropped once assembled
    r = cli("get", "searchr1", "--dir", str(tmp_path), endpoint=fake_hub.url)
    assert r.returncode == 1 and "no RUC-NLPIR/FlashRAG_datasets/nq/test.jsonl" in r.stderr  # fake hub lacks it
    assert "wiki-18: present" in r.stdout


def test_killed_download_resumes_where_it_stopped(fake_hub, tmp_path):
    data = os.urandom(24 * 2**20)  # the client writes 10 MiB chunks: fast up to 11 MiB, then a trickle
    fake_hub.add("PeterJinGo/wiki-18-e5-index", "part_aa", data, bytes_per_s=100_000, slow_after=11 * 2**20)
    fake_hub.add("PeterJinGo/wiki-18-e5-index", "part_ab", b"tail")
    proc = popen("get", "wiki-18-e5-flat", "--dir", str(tmp_path), endpoint=fake_hub.url)
    folder = tmp_path / "wiki-18-e5-flat"
    deadline = time.time() + 60
    partial = 0
    while time.time() < deadline and partial < 10 * 2**20:
        partial = sum(p.stat().st_size for p in folder.rglob("*.incomplete")) if folder.is_dir() else 0
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert 0 < partial < len(data), "the download was not caught mid-way"
    assert hub.status(hub.ITEMS["wiki-18-e5-flat"], tmp_path) == "partial"
    fake_hub.files[("PeterJinGo/wiki-18-e5-index", "part_aa")].bytes_per_s = None
    r = cli("get", "wiki-18-e5-flat", "--dir", str(tmp_path), endpoint=fake_hub.url)
    assert r.returncode == 0, r.stderr
    ranges = fake_hub.gets("part_aa")
    assert ranges == ["", f"bytes={partial}-"]  # the second run asked only for the rest
    assert hub.item_path("wiki-18-e5-flat", tmp_path).read_bytes() == data + b"tail"


def test_dropped_connection_is_resumed_by_the_client(fake_hub, tmp_path):
    data = os.urandom(15 * 2**20)
    fake_hub.add(hub.FLASHRAG_REPO, "popqa/test.jsonl", data, cut_after=11 * 2**20)  # one 10 MiB chunk got through
    r = cli("get", "popqa", "--dir", str(tmp_path), endpoint=fake_hub.url)
    assert r.returncode == 0, r.stderr
    assert fake_hub.gets("popqa/test.jsonl") == ["", f"bytes={10 * 2**20}-"]
    assert hub.item_path("popqa", tmp_path).read_bytes() == data


@pytest.mark.parametrize("lfs", [True, False])
def test_bad_checksum_is_detected_and_the_file_removed(fake_hub, tmp_path, lfs):
    fake_hub.add(hub.FLASHRAG_REPO, "musique/dev.jsonl", NQ, bad_etag=True, lfs=lfs)
    r = cli("get", "musique", "--dir", str(tmp_path), endpoint=fake_hub.url)
    assert r.returncode == 1
    assert ("sha256" if lfs else "git sha1") in r.stderr and "differs from the hub's" in r.stderr
    assert not hub.item_path("musique", tmp_path).exists()
    assert hub.status(hub.ITEMS["musique"], tmp_path) != "present"


def test_offline_fails_fast_and_clearly(tmp_path):
    start_t = time.monotonic()
    r = cli("get", "nq", "--dir", str(tmp_path), endpoint="http://127.0.0.1:9", env_extra={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1 and "HF_HUB_OFFLINE is set" in r.stderr
    no_connection = time.monotonic() - start_t  # the same command, stopped before it connects: the machine's pace now
    start_t = time.monotonic()
    r = cli("get", "nq", "--dir", str(tmp_path), endpoint="http://127.0.0.1:9")  # nothing listens on port 9
    assert r.returncode == 1 and "unreachable" in r.stderr and "HF_ENDPOINT" in r.stderr
    assert time.monotonic() - start_t < 2 * no_connection + 10  # no retries (huggingface_hub's backoff waits 23 s)
    r = cli("get", "nope", "--dir", str(tmp_path), endpoint="http://127.0.0.1:9")
    assert r.returncode == 1 and "unknown data item 'nope'" in r.stderr


def test_not_enough_disk_space_is_said_before_downloading(fake_hub, tmp_path, monkeypatch):
    """In-process (the real client, over HTTP) with the disk reported nearly full."""
    import shutil
    from collections import namedtuple

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read at import; the suite runs with it set
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    fake_hub.add("PeterJinGo/wiki-18-e5-index", "part_aa", os.urandom(50_000))
    fake_hub.add("PeterJinGo/wiki-18-e5-index", "part_ab", os.urandom(50_000))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 30_000, 30_000))
    with pytest.raises(hub.HubDataError, match="needs 0.0 GB more .* which has 0.0 GB free"):
        hub.get(["wiki-18-e5-flat"], tmp_path, progress=False, log=lambda _: None)
    assert fake_hub.gets("part_aa") == []  # refused before any byte was asked for
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 60_000, 60_000))
    with pytest.raises(hub.HubDataError, match="joining the parts of wiki-18-e5-flat needs"):
        hub.get(["wiki-18-e5-flat"], tmp_path, progress=False, log=lambda _: None)
    assert (tmp_path / "wiki-18-e5-flat" / "part_ab").is_file()  # parts kept for the next try
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    assert hub.get(["wiki-18-e5-flat"], tmp_path, progress=False, log=lambda _: None)[0].stat().st_size == 100_000
