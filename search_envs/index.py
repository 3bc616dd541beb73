"""Index directories: atomic build, manifest, validated load.

An index directory holds `manifest.json`, the passage store (`passages.jsonl`,
`offsets.npy`) and the engine's own files. It is built in `<out>.tmp-<random>` and
renamed into place at the end, so a crash never leaves a half index under `out`.
A hybrid index is a directory holding a `bm25/` and a `dense/` index.

Loading checks the manifest, the engine kind, the corpus hash (when a corpus is
given) and every file's size; `check_index(deep=True)` also checks sha256 sums.
An imported index's originals (`references`) are checked by size and mtime only.
Anything wrong raises `BrokenIndexError`, which names the file and the rebuild command.

`open_engine` is the one place that turns an engine spec into an engine: a kind
(loaded from `index_dir`, or built into the cache on first use), a retrieval
server URL, or a ready `SearchEngine`. Each engine class names its own parameters
(`build_params`, `load_params`); `engine_params` reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_envs.corpus import CorpusStats, file_sha256, resolve_corpus
from search_envs.store import STORE_DICT, STORE_OFFSETS, STORE_PACKED
from search_envs.store_build import write_corpus_store

if TYPE_CHECKING:
    from search_envs.engines.base import SearchEngine

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("bm25", "dense", "hybrid")
# taken by every kind's build: how the corpus is cut into passages, and whether to show progress
INDEX_PARAMS = ("passage_words", "show_progress")
STORE_FILES = (STORE_PACKED, STORE_DICT, STORE_OFFSETS)  # the passage store a build writes


class BrokenIndexError(ValueError):
    """An index directory that is missing, incomplete, corrupt or built for something else."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        super().__init__(f"{path}: {problem}. {rebuild_advice(self.path)}")


def rebuild_advice(path: Path) -> str:
    """How to fix a broken index: a cached one is rebuilt on first use once deleted; a
    user's own (`--index DIR`) must be rebuilt, since nothing rebuilds it by itself."""
    from search_envs.data import cache_dir

    cache = (cache_dir() / "indexes").resolve()
    if path.resolve().is_relative_to(cache):
        index = cache / path.resolve().relative_to(cache).parts[0]
        return f"It is a cached index: delete {index} and it is rebuilt on first use"
    return "Rebuild it with `search-envs index build --corpus CORPUS --kind KIND --out DIR --force`"


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
    check_references(directory, manifest)
    if corpus is not None:
        sha = file_sha256(resolve_corpus(corpus))
        if sha != manifest.get("corpus_sha256"):
            raise BrokenIndexError(
                directory, f"built from a different corpus ({manifest.get('corpus')}, sha256 {str(manifest.get('corpus_sha256'))[:12]}...)"
            )
    return manifest


def check_references(directory: Path, manifest: dict[str, Any]) -> None:
    """The originals an imported index links to (`references`: path, bytes, mtime) are still
    there and unchanged by size and mtime: cheap for a 64 GB faiss index, which is never hashed."""
    for name, ref in manifest.get("references", {}).items():
        path = directory / name
        if not path.is_file():
            raise BrokenIndexError(path, f"the imported file {ref.get('path')} is gone (moved or deleted)")
        st = path.stat()
        if st.st_size != ref.get("bytes"):
            raise BrokenIndexError(path, f"{st.st_size} bytes, imported as {ref.get('bytes')} (replaced?); "
                                         "re-run `search-envs index import`")
        if "mtime" in ref and int(st.st_mtime) != ref["mtime"]:
            raise BrokenIndexError(path, f"modified since the import (mtime {int(st.st_mtime)}, imported at {ref['mtime']}); "
                                         "re-run `search-envs index import`")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_builds(out: Path) -> list[Path]:
    """Remove `<out>.tmp-<pid>-*` and `<out>.old-<pid>-*` left by builds whose process is gone
    (killed, or the machine went down); a build still running keeps its directory."""
    removed = []
    for path in out.parent.glob(f"{glob_escape(out.name)}.[to][ml][pd]-*"):
        kind, _, rest = path.name[len(out.name) + 1 :].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and path.is_dir() and (not pid.isdigit() or not _pid_alive(int(pid))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary sibling of `out`; on success rename it to `out`.

    If `out` appeared meanwhile (a concurrent build won) and `overwrite` is off,
    the new build is discarded and the existing one kept. The temporary name holds
    the builder's pid, so the next build removes what a killed one left.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if out.exists() and overwrite:
            old = out.with_name(f"{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.rename(out, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, out)
        except OSError:
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def engine_class(kind: str) -> type:
    """The engine class of an index kind (imported on demand: faiss and bm25s are heavy)."""
    if kind == "bm25":
        from search_envs.engines.bm25 import BM25Engine

        return BM25Engine
    if kind == "dense":
        from search_envs.engines.dense import DenseEngine

        return DenseEngine
    if kind == "hybrid":
        from search_envs.engines.hybrid import HybridEngine

        return HybridEngine
    raise ValueError(f"unknown engine kind {kind!r}; choose one of {', '.join(KINDS)}")


def engine_params(kind: str) -> tuple[set[str], set[str]]:
    """(build params, load params) of a kind, as its engine class(es) name them."""
    if kind == "hybrid":
        (bb, bl), (db, dl) = engine_params("bm25"), engine_params("dense")
        return bb | db, bl | dl | set(engine_class("hybrid").load_params)
    cls = engine_class(kind)
    return set(cls.build_params) | set(INDEX_PARAMS), set(cls.load_params)


def _for_kind(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The build params of a hybrid index meant for one of its parts."""
    accepted = engine_params(kind)[0]
    return {k: v for k, v in params.items() if k in accepted}


def _refuse_unknown(kind: str, params: dict[str, Any]) -> None:
    unknown = set(params) - engine_params(kind)[0]
    if unknown:
        raise ValueError(f"unknown index parameter(s) for {kind}: {', '.join(sorted(unknown))}")


def _build_into(
    directory: Path, corpus_path: Path, kind: str, skip_bad: bool, params: dict[str, Any], store_of: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build one index into `directory`. `store_of`: the manifest of a sibling index built
    from the same corpus with the same passage size (a hybrid's bm25 part), whose passage
    store is linked rather than written again."""
    directory.mkdir(parents=True, exist_ok=True)
    words = int(params.pop("passage_words", 100))
    if store_of is not None and store_of["passage_words"] == words:
        stats = CorpusStats(store_of["records"], store_of["passages"], store_of["bad_lines_skipped"], store_of["corpus_sha256"])
        for name in STORE_FILES:
            _link_or_copy(Path(store_of["directory"]) / name, directory / name)
    else:
        # the store build hashes the corpus as it reads it: a 14 GB corpus is read once, not twice
        stats = write_corpus_store(corpus_path, directory, words=words, skip_bad=skip_bad,
                                   show_progress=params.get("show_progress", True))
    count = stats.passages
    if count == 0:
        raise ValueError(f"{corpus_path}: no passages (empty corpus)")
    info = engine_class(kind).build(directory, **params)
    return write_manifest(
        directory,
        {
            "kind": kind,
            "corpus": str(corpus_path.resolve()),
            "corpus_sha256": stats.sha256,
            "passages": count,
            "records": stats.records,
            "bad_lines_skipped": stats.bad_lines,
            "passage_words": words,
            **info,
        },
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (the same bytes, no second copy on disk), or a copy across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


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
    with atomic_dir(out, overwrite=overwrite) as tmp:
        _refuse_unknown(kind, params)
        if kind == "hybrid":
            bm25_params, dense_params = _for_kind("bm25", params), _for_kind("dense", params)
            bm25 = _build_into(tmp / "bm25", corpus_path, "bm25", skip_bad, bm25_params)
            # both parts hold the same passage store: written once, linked into dense/
            store_of = {**bm25, "directory": tmp / "bm25"}
            sub = {"bm25": bm25, "dense": _build_into(tmp / "dense", corpus_path, "dense", skip_bad, dense_params, store_of)}
            write_manifest(
                tmp,
                {
                    "kind": "hybrid",
                    "corpus": str(corpus_path.resolve()),
                    "corpus_sha256": sub["bm25"]["corpus_sha256"],
                    "passages": sub["bm25"]["passages"],
                    "model": sub["dense"]["model"],
                    "parts": ["bm25", "dense"],
                },
            )
        else:
            _build_into(tmp, corpus_path, kind, skip_bad, dict(params))
    return out


def load_index(
    directory: str | Path, corpus: str | Path | None = None, kind: str | None = None, verify: bool | None = None,
    **params: Any,
) -> "SearchEngine":
    """Open a built index as a SearchEngine, after validating it.

    `verify` checks every file's sha256 against the manifest, so a file corrupted at
    the same size is refused, naming it (default: on, unless the environment sets
    SEARCH_ENVS_VERIFY=0, for multi-GB indexes that are slow to hash; sizes are
    always checked). params override search-time settings (bm25: n_threads; dense:
    encoder, ef_search, nprobe, batch_size, device; hybrid: those and rrf_k, fetch_k);
    settings meant for another kind are ignored.
    """
    directory = Path(directory)
    if verify is None:
        verify = os.environ.get("SEARCH_ENVS_VERIFY", "1") != "0"
    manifest = check_index(directory, kind=kind, corpus=corpus, deep=verify)
    if manifest["kind"] == "hybrid":
        return load_hybrid(directory / "bm25", directory / "dense", **params)
    accepted = engine_params(manifest["kind"])[1]
    try:
        return engine_class(manifest["kind"])(directory, manifest, **{k: v for k, v in params.items() if k in accepted})
    except BrokenIndexError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, EOFError) as exc:
        raise BrokenIndexError(directory, f"cannot be loaded ({type(exc).__name__}: {exc})") from exc


def load_hybrid(bm25_dir: str | Path, dense_dir: str | Path, **params: Any) -> "SearchEngine":
    """A HybridEngine over a BM25 and a dense index built from the same corpus (checked by hash)."""
    hybrid = engine_class("hybrid")
    bm25 = load_index(bm25_dir, kind="bm25", **params)
    dense = load_index(dense_dir, kind="dense", **params)
    if bm25.manifest.get("corpus_sha256") != dense.manifest.get("corpus_sha256"):
        bm25.close()
        dense.close()
        raise BrokenIndexError(dense_dir, f"built from a different corpus than {bm25_dir}; passage ids would not match")
    return hybrid(bm25, dense, **{k: v for k, v in params.items() if k in hybrid.load_params})


# -- engine specs ---------------------------------------------------------------------

ENGINE_SPEC_HELP = "an engine is 'bm25', 'dense', 'hybrid', a retrieval server URL (http://host:port) or a SearchEngine"


def is_server_url(spec: Any) -> bool:
    return isinstance(spec, str) and spec.startswith(("http://", "https://"))


def open_engine(
    spec: "str | SearchEngine",
    corpus: str | Path | None = None,
    index_dir: str | Path | Sequence[str | Path] | None = None,
    **params: Any,
) -> "SearchEngine":
    """A ready engine from an engine spec (the one place that decides what a spec means).

    spec: "bm25", "dense" or "hybrid"; the URL of a retrieval server speaking
    Search-R1's /retrieve protocol (`search-envs serve`, or Search-R1's own
    retrieval_server.py), searched through `RemoteEngine` (params: its options;
    api_key defaults to $SEARCH_ENVS_API_KEY); or a `SearchEngine`, returned as is.

    For a kind: with `index_dir`, load it (hybrid: a directory holding bm25/ and
    dense/, or a pair of directories); a given `corpus` is checked against the
    index's hash. Without, build an index of `corpus` (None: the embedded Wikipedia
    sample) into the cache on first use and reuse it afterwards. Each param goes
    where the kind's engine class says: search-time ones (its `load_params`) to the
    engine, the others (its `build_params`) to the build.
    """
    from search_envs.engines.base import SearchEngine

    if isinstance(spec, SearchEngine):
        if corpus is not None or index_dir is not None or params:
            raise ValueError("corpus, index_dir or engine options given with a ready SearchEngine")
        return spec
    if is_server_url(spec):
        if corpus is not None or index_dir is not None:
            raise ValueError(f"a retrieval server ({spec}) takes no corpus or index_dir: the server has its own")
        from search_envs.engines.remote import RemoteEngine

        params.setdefault("api_key", os.environ.get("SEARCH_ENVS_API_KEY"))
        return RemoteEngine(spec, **params)
    if not isinstance(spec, str) or spec not in KINDS:
        raise ValueError(f"unknown engine kind {spec!r}; {ENGINE_SPEC_HELP}")
    kind = spec
    load_accepts = engine_params(kind)[1]
    search_params = {k: v for k, v in params.items() if k in load_accepts}
    build_params = {k: v for k, v in params.items() if k not in load_accepts}
    if index_dir is not None and not isinstance(index_dir, (str, Path)):
        bm25_dir, dense_dir = index_dir
        if corpus is not None:
            check_index(bm25_dir, kind="bm25", corpus=corpus)  # load_hybrid checks dense against bm25
        return load_hybrid(bm25_dir, dense_dir, **search_params)
    if index_dir is None and kind == "hybrid":
        # Fuse the cached BM25 and dense indexes: nothing is encoded twice.
        _refuse_unknown(kind, build_params)
        return load_hybrid(
            _cached_build("bm25", corpus, _for_kind("bm25", build_params), search_params),
            _cached_build("dense", corpus, _for_kind("dense", build_params), search_params),
            **search_params,
        )
    if index_dir is None:
        index_dir = _cached_build(kind, corpus, build_params, search_params)
        corpus = None  # the cache name already pins the corpus hash
    return load_index(index_dir, corpus=corpus, kind=kind, **search_params)


def cached_index_dir(kind: str, corpus: str | Path | None = None, **build_params: Any) -> Path:
    """Where `open_engine` keeps the index of (kind, corpus, build params):
    `cache_dir()/indexes/<kind>-<corpus sha256[:12]>[-<scheme>-<postings format> | -<model>][-<params hash>]`.
    Search-time settings (the kind's `load_params`) do not change the index, so not its name."""
    from search_envs.data import cache_dir
    from search_envs.engines.dense import DEFAULT_MODEL

    name = f"{kind}-{file_sha256(resolve_corpus(corpus))[:12]}"
    load_accepts = engine_params(kind)[1]
    build_params = {k: v for k, v in build_params.items() if k not in ("show_progress", "overwrite") and k not in load_accepts}
    if kind == "bm25":  # the scheme and postings format name it: an older index is never picked up
        from search_envs.engines.bm25 import DEFAULT_SCHEME
        from search_envs.postings import FORMAT

        name += "-" + str(build_params.pop("scheme", DEFAULT_SCHEME)) + "-" + FORMAT
    else:
        model = build_params.pop("model", DEFAULT_MODEL)
        name += "-" + re.sub(r"[^A-Za-z0-9._-]+", "_", str(model).rstrip("/").split("/")[-1])
    if build_params:
        name += "-" + hashlib.sha256(json.dumps(build_params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return cache_dir() / "indexes" / name


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock so concurrent first uses build an index once (POSIX; elsewhere the atomic rename decides)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cached_build(kind: str, corpus: str | Path | None, build_params: dict, search_params: dict) -> Path:
    """The cache directory of this index, built first if it is not there yet.
    Search-time settings the build also takes (the encoder, its device) are passed to it."""
    index_dir = cached_index_dir(kind, corpus, **build_params)
    if not index_dir.is_dir():
        with _file_lock(index_dir.with_name(index_dir.name + ".lock")):
            if not index_dir.is_dir():
                build_accepts = engine_params(kind)[0]
                params = {**{k: v for k, v in search_params.items() if k in build_accepts}, **build_params}
                build_index(corpus, kind, index_dir, **params)
    return index_dir
