"""Index directories: atomic build, manifest, validated load.

An index directory holds `manifest.json`, the passage store (`passages.jsonl`,
`offsets.npy`) and the engine's own files. It is built in `<out>.tmp-<random>` and
renamed into place at the end, so a crash never leaves a half index under `out`.
A hybrid index is a directory holding a `bm25/` and a `dense/` index.

Loading checks the manifest, the engine kind, the corpus hash (when a corpus is
given) and every file's size; `check_index(deep=True)` also checks sha256 sums.
Anything wrong raises `BrokenIndexError`, which names the file and the rebuild command.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search_envs.corpus import CorpusStats, file_sha256, iter_passages, resolve_corpus, write_store

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("bm25", "dense", "hybrid")
# Search-time settings each engine takes on load; others (meant for another kind) are ignored.
LOAD_PARAMS = {"bm25": {"n_threads"}, "dense": {"encoder", "device", "batch_size", "ef_search", "nprobe"}}


class BrokenIndexError(ValueError):
    """An index directory that is missing, incomplete, corrupt or built for something else."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        super().__init__(
            f"{path}: {problem}. Rebuild it with `search-envs index build --corpus CORPUS --kind KIND --out DIR` "
            "(or delete it so it is rebuilt on first use)"
        )


def _files(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p != directory / MANIFEST
    }


def write_manifest(directory: Path, info: dict[str, Any]) -> dict[str, Any]:
    manifest = {"format_version": FORMAT_VERSION, **info, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    manifest["files"] = _files(directory)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(directory: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The manifest of an index, after checking it parses and matches `kind`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BrokenIndexError(directory, "no such index directory")
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BrokenIndexError(path, "missing manifest (not an index, or an interrupted build)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BrokenIndexError(path, f"manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BrokenIndexError(path, "manifest has no file list")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BrokenIndexError(path, f"unknown format version {manifest.get('format_version')!r} (this code reads {FORMAT_VERSION})")
    if manifest.get("kind") not in KINDS:
        raise BrokenIndexError(path, f"unknown engine kind {manifest.get('kind')!r}")
    if kind is not None and manifest["kind"] != kind:
        raise BrokenIndexError(path, f"this is a {manifest['kind']} index, not {kind}")
    return manifest


def check_index(
    directory: str | Path, kind: str | None = None, corpus: str | Path | None = None, deep: bool = False
) -> dict[str, Any]:
    """Validate an index directory without loading it; returns its manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory, kind)
    for name, meta in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise BrokenIndexError(path, "file missing")
        size = path.stat().st_size
        if size != meta.get("bytes"):
            raise BrokenIndexError(path, f"{size} bytes, the manifest says {meta.get('bytes')} (truncated or replaced)")
        if deep and file_sha256(path) != meta.get("sha256"):
            raise BrokenIndexError(path, "sha256 differs from the manifest (corrupt)")
    if corpus is not None:
        sha = file_sha256(resolve_corpus(corpus))
        if sha != manifest.get("corpus_sha256"):
            raise BrokenIndexError(
                directory, f"built from a different corpus ({manifest.get('corpus')}, sha256 {str(manifest.get('corpus_sha256'))[:12]}...)"
            )
    return manifest


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary sibling of `out`; on success rename it to `out`.

    If `out` appeared meanwhile (a concurrent build won) and `overwrite` is off,
    the new build is discarded and the existing one kept.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if out.exists() and overwrite:
            old = out.with_name(f"{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(out, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, out)
        except OSError:
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def split_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The build parameters that the `kind` engine's build takes (plus passage_words)."""
    from search_envs.engines.bm25 import BM25Engine
    from search_envs.engines.dense import DenseEngine

    build = BM25Engine.build if kind == "bm25" else DenseEngine.build
    accepted = set(inspect.signature(build).parameters) | {"passage_words"}
    return {k: v for k, v in params.items() if k in accepted}


def _build_into(directory: Path, corpus_path: Path, corpus_sha: str, kind: str, skip_bad: bool, params: dict[str, Any]) -> dict[str, Any]:
    from search_envs.engines.bm25 import BM25Engine
    from search_envs.engines.dense import DenseEngine

    directory.mkdir(parents=True, exist_ok=True)
    stats = CorpusStats()
    words = int(params.pop("passage_words", 100))
    count = write_store(iter_passages(corpus_path, words=words, skip_bad=skip_bad, stats=stats), directory)
    if count == 0:
        raise ValueError(f"{corpus_path}: no passages (empty corpus)")
    engine = BM25Engine if kind == "bm25" else DenseEngine
    info = engine.build(directory, **params)
    return write_manifest(
        directory,
        {
            "kind": kind,
            "corpus": str(corpus_path),
            "corpus_sha256": corpus_sha,
            "passages": count,
            "records": stats.records,
            "bad_lines_skipped": stats.bad_lines,
            "passage_words": words,
            **info,
        },
    )


def build_index(
    corpus: str | Path | None,
    kind: str,
    out: str | Path,
    overwrite: bool = False,
    skip_bad: bool = False,
    **params: Any,
) -> Path:
    """Build a `kind` index of `corpus` (a path, "embedded" or None) into `out`.

    params go to the engine: bm25 (scheme, k1, b, workers, memory_mb), dense (model, faiss, hnsw_m,
    ef_search, ef_construction, nlist, pq_m, nprobe, query_prefix,
    passage_prefix, batch_size, device), and `passage_words` (chunk size).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown engine kind {kind!r}; choose one of {', '.join(KINDS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True / --force to replace it)")
    corpus_path = resolve_corpus(corpus)
    corpus_sha = file_sha256(corpus_path)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if kind == "hybrid":
            bm25_params, dense_params = split_params("bm25", params), split_params("dense", params)
            unknown = set(params) - set(bm25_params) - set(dense_params)
            if unknown:
                raise ValueError(f"unknown index parameter(s) for hybrid: {', '.join(sorted(unknown))}")
            sub = {
                "bm25": _build_into(tmp / "bm25", corpus_path, corpus_sha, "bm25", skip_bad, bm25_params),
                "dense": _build_into(tmp / "dense", corpus_path, corpus_sha, "dense", skip_bad, dense_params),
            }
            write_manifest(
                tmp,
                {
                    "kind": "hybrid",
                    "corpus": str(corpus_path),
                    "corpus_sha256": corpus_sha,
                    "passages": sub["bm25"]["passages"],
                    "model": sub["dense"]["model"],
                    "parts": ["bm25", "dense"],
                },
            )
        else:
            unknown = set(params) - set(split_params(kind, params))
            if unknown:
                raise ValueError(f"unknown index parameter(s) for {kind}: {', '.join(sorted(unknown))}")
            _build_into(tmp, corpus_path, corpus_sha, kind, skip_bad, dict(params))
    return out


def load_index(
    directory: str | Path, corpus: str | Path | None = None, kind: str | None = None, verify: bool | None = None, **params: Any
):
    """Open a built index as a SearchEngine, after validating it.

    `verify` checks every file's sha256 against the manifest, so a file corrupted at
    the same size is refused, naming it (default: on, unless the environment sets
    SEARCH_ENVS_VERIFY=0, for multi-GB indexes that are slow to hash; sizes are
    always checked). params override search-time settings (dense: ef_search,
    nprobe, batch_size, device; hybrid: rrf_k, fetch_k).
    """
    from search_envs.engines.bm25 import BM25Engine
    from search_envs.engines.dense import DenseEngine
    from search_envs.engines.hybrid import HybridEngine

    directory = Path(directory)
    if verify is None:
        verify = os.environ.get("SEARCH_ENVS_VERIFY", "1") != "0"
    manifest = check_index(directory, kind=kind, corpus=corpus, deep=verify)
    if manifest["kind"] == "hybrid":
        return HybridEngine.from_dirs(directory / "bm25", directory / "dense", **params)
    engine = BM25Engine if manifest["kind"] == "bm25" else DenseEngine
    accepted = LOAD_PARAMS[manifest["kind"]]
    try:
        return engine(directory, manifest, **{k: v for k, v in params.items() if k in accepted})
    except BrokenIndexError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, EOFError) as exc:
        raise BrokenIndexError(directory, f"cannot be loaded ({type(exc).__name__}: {exc})") from exc
