"""The papers' data on the Hugging Face hub: wiki-18, Search-R1's e5 Flat index, and
FlashRAG's test sets, fetched with `huggingface_hub` (resumable, progress bars) and
checked against the checksum the hub publishes for each file.

Each item lands in `data_dir()/<item>/` (`SEARCH_ENVS_DATA_HOME` or `cache_dir()/data`):

    wiki-18           PeterJinGo/wiki-18-corpus   wiki-18.jsonl.gz -> wiki-18.jsonl (gunzipped)
    wiki-18-e5-flat   PeterJinGo/wiki-18-e5-index part_aa + part_ab -> e5_Flat.index (concatenated)
    nq, triviaqa, ... RUC-NLPIR/FlashRAG_datasets <config>/<split>.jsonl (the split Search-R1 evaluates)

These are the repos and files of Search-R1's `scripts/download.py` and FlashRAG's
dataset card. `get` is idempotent: a finished item (its `.done.json` matches the files)
is not fetched again, a partial download resumes from its `<file>.incomplete`, and a
file whose sha256 (LFS) or git blob sha1 differs from the hub's ETag is deleted and
reported. `HF_ENDPOINT` (read at call time) points at a mirror.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from search_envs.datasets import FLASHRAG_DEFAULT_SPLITS, FLASHRAG_REPO
from search_envs.data import cache_dir

DONE = ".done.json"
CHUNK = 16 * 1024 * 1024


class HubDataError(RuntimeError):
    """A download that cannot be done (offline, unknown item, bad checksum): the message says what to do."""


@dataclass(frozen=True)
class DataItem:
    """One thing `search-envs data get NAME` fetches.

    files: paths in the hub repo; assemble: "gunzip" (one .gz file), "concat" (parts in
    order) or "" (the files are the result); output: the result's name in the item folder;
    approx_bytes: the download's size, for `data list`.
    """

    name: str
    description: str
    repo_id: str
    files: tuple[str, ...]
    output: str
    assemble: str = ""
    approx_bytes: int = 0
    revision: str = "main"


def _flashrag(name: str) -> DataItem:
    split = FLASHRAG_DEFAULT_SPLITS[name]
    return DataItem(name, f"FlashRAG's {name} {split} set (the split Search-R1 evaluates on)", FLASHRAG_REPO,
                    (f"{name}/{split}.jsonl",), f"{name}/{split}.jsonl")


ITEMS: dict[str, DataItem] = {
    "wiki-18": DataItem("wiki-18", "Wikipedia Dec 2018, 21,015,324 100-word passages (Search-R1/FlashRAG corpus)",
                        "PeterJinGo/wiki-18-corpus", ("wiki-18.jsonl.gz",), "wiki-18.jsonl", "gunzip",
                        approx_bytes=5_123_307_260),  # the .gz, as FlashRAG's copy of the same file
    "wiki-18-e5-flat": DataItem("wiki-18-e5-flat", "Search-R1's faiss Flat index of wiki-18 with intfloat/e5-base-v2",
                                "PeterJinGo/wiki-18-e5-index", ("part_aa", "part_ab"), "e5_Flat.index", "concat",
                                approx_bytes=64_600_000_000),  # 21,015,324 x 768 x 4 B
    **{name: _flashrag(name) for name in FLASHRAG_DEFAULT_SPLITS},
}
GROUPS = {"test-sets": tuple(FLASHRAG_DEFAULT_SPLITS), "searchr1": ("wiki-18", "wiki-18-e5-flat", *FLASHRAG_DEFAULT_SPLITS)}


def data_dir() -> Path:
    """Where `data get` puts things: `SEARCH_ENVS_DATA_HOME`, else `cache_dir()/data`."""
    root = os.environ.get("SEARCH_ENVS_DATA_HOME")
    return Path(root).expanduser() if root else cache_dir() / "data"


SEARCHR1_INDEX = "indexes/wiki-18-e5"
"""Where `search-envs index import --from-data` puts the imported e5 index, under `data_dir()`."""


def searchr1_index_dir(root: str | Path | None = None) -> Path:
    return Path(root or data_dir()) / SEARCHR1_INDEX


def expand(names: list[str]) -> list[DataItem]:
    """Items for names and group names, in order, without repeats; unknown names raise."""
    out: list[DataItem] = []
    for name in names:
        for one in GROUPS.get(name, (name,)):
            if one not in ITEMS:
                choices = ", ".join([*ITEMS, *GROUPS])
                raise HubDataError(f"unknown data item {one!r}; choose from {choices}")
            if ITEMS[one] not in out:
                out.append(ITEMS[one])
    return out


def item_path(name: str, root: str | Path | None = None) -> Path:
    """The finished file of an item (it may not exist yet)."""
    item = ITEMS[name]
    return Path(root or data_dir()) / item.name / item.output


def status(item: DataItem, root: str | Path | None = None) -> str:
    """"present" (finished and recorded), "partial" (something downloaded) or "absent"."""
    folder = Path(root or data_dir()) / item.name
    if _done_record(folder, item) is not None:
        return "present"
    return "partial" if folder.is_dir() and any(folder.iterdir()) else "absent"


def _done_record(folder: Path, item: DataItem) -> dict | None:
    record = _read_json(folder / DONE)
    out = folder / item.output
    if record.get("output") != item.output or not out.is_file() or out.stat().st_size != record.get("bytes"):
        return None
    return record


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file: the hub's ETag for files not stored in LFS."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, etag: str) -> None:
    """Check a downloaded file against the hub's ETag: sha256 for LFS files, git sha1 otherwise."""
    etag = etag.strip('"').removeprefix("W/").strip('"')
    if len(etag) == 64:
        actual, kind = _sha256(path), "sha256"
    elif len(etag) == 40:
        actual, kind = git_blob_sha1(path), "git sha1"
    else:
        raise HubDataError(f"{path.name}: the hub gave no checksum (ETag {etag!r}); cannot verify the download")
    if actual != etag:
        raise HubDataError(f"{path.name}: {kind} {actual} differs from the hub's {etag} (corrupt download; it was deleted, run `get` again)")


def _download(item: DataItem, filename: str, folder: Path, endpoint: str) -> Path:
    """One hub file into `folder/filename`, resuming `<file>.incomplete` left by an earlier run.

    huggingface_hub >= 1 downloads into a per-process temporary file and deletes it on
    failure (so a killed run restarts from zero); large files here are tens of GB, so we
    drive the client's own pieces instead: `get_hf_file_metadata` (HEAD: ETag, size,
    redirect) and `http_get` (streaming GET with Range, retries, progress bar) appending
    to a stable partial file that is kept while its ETag still matches the hub's.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    dest = folder / filename
    partial = dest.with_name(dest.name + ".incomplete")
    record = folder / ".meta" / (filename.replace("/", "__") + ".json")
    url = hf_hub_url(item.repo_id, filename, repo_type="dataset", revision=item.revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, timeout=10)
    except OfflineModeIsEnabled:
        raise HubDataError(f"cannot download {item.repo_id}/{filename}: HF_HUB_OFFLINE is set; unset it") from None
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise HubDataError(f"{endpoint} has no {item.repo_id}/{filename} ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - connection refused, DNS, timeouts, 5xx: all mean "not now"
        raise HubDataError(
            f"cannot download {item.repo_id}/{filename}: the hub at {endpoint} is unreachable or failing "
            f"({type(exc).__name__}: {str(exc)[:200]}). Run this where the hub is reachable (or set HF_ENDPOINT "
            f"to a mirror); partial downloads resume"
        ) from None
    etag = (meta.etag or "").strip('"')
    known = _read_json(record)
    if dest.is_file() and known.get("etag") == etag and known.get("complete") and dest.stat().st_size == known.get("bytes"):
        return dest  # already here and current
    dest.parent.mkdir(parents=True, exist_ok=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    resume = partial.stat().st_size if partial.is_file() and known.get("etag") == etag else 0
    if meta.size is not None and resume > meta.size:
        resume = 0
    need, free = (meta.size or 0) - resume, shutil.disk_usage(dest.parent).free
    if need > free:  # say so now, not after hours of download
        raise HubDataError(f"{item.repo_id}/{filename} needs {need / 1e9:.1f} GB more in {dest.parent}, "
                           f"which has {free / 1e9:.1f} GB free (use --dir elsewhere)")
    _write_json(record, {"etag": etag, "bytes": meta.size, "complete": False})
    try:
        with open(partial, "ab" if resume else "wb") as f:
            http_get(meta.location, f, resume_size=resume, headers=build_hf_headers(), expected_size=meta.size,
                     displayed_filename=filename)
    except Exception as exc:  # noqa: BLE001 - the bytes so far stay in `partial` for the next run
        raise HubDataError(
            f"downloading {item.repo_id}/{filename} from {endpoint} failed ({type(exc).__name__}: {str(exc)[:300]}); "
            f"run `get` again: it resumes from the {partial.stat().st_size if partial.exists() else 0:,} bytes kept"
        ) from None
    try:
        verify(partial, etag)
    except HubDataError:
        partial.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)
    _write_json(record, {"etag": etag, "bytes": dest.stat().st_size, "complete": True})
    return dest


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _assemble(item: DataItem, parts: list[Path], out: Path, progress: bool) -> None:
    """Write the item's output from its downloaded files via a temporary file renamed at the end."""
    from tqdm.auto import tqdm

    tmp = out.with_name(out.name + ".assembling")
    total = sum(p.stat().st_size for p in parts)
    free = shutil.disk_usage(out.parent).free
    if item.assemble == "concat" and total > free:
        raise HubDataError(f"joining the parts of {item.name} needs {total / 1e9:.1f} GB free in {out.parent}, "
                           f"which has {free / 1e9:.1f} GB (the parts are kept; free space and run `get` again)")
    with open(tmp, "wb") as dst, tqdm(total=total, unit="B", unit_scale=True, desc=f"{item.assemble} -> {out.name}",
                                      disable=not progress) as bar:
        for part in parts:
            with (gzip.open(part, "rb") if item.assemble == "gunzip" else open(part, "rb")) as src:
                raw = getattr(src, "fileobj", src)  # gzip: count compressed bytes for the bar
                last = 0
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    dst.write(chunk)
                    where = raw.tell()
                    bar.update(where - last)
                    last = where
    os.replace(tmp, out)


def get(names: list[str], root: str | Path | None = None, keep_parts: bool = False, progress: bool = True,
        log: Callable[[str], None] = print) -> list[Path]:
    """Fetch items (and groups: "test-sets", "searchr1"); returns each item's finished file."""
    root = Path(root or data_dir())
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    done: list[Path] = []
    for item in expand(names):
        folder = root / item.name
        out = folder / item.output
        if _done_record(folder, item) is not None:
            log(f"{item.name}: present ({out})")
            done.append(out)
            continue
        if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
            raise HubDataError(f"{item.name} is not in {root} and HF_HUB_OFFLINE is set: unset it to download")
        folder.mkdir(parents=True, exist_ok=True)
        files = [_download(item, f, folder, endpoint) for f in item.files]
        if item.assemble:
            _assemble(item, files, out, progress)
        record = {"output": item.output, "bytes": out.stat().st_size, "repo_id": item.repo_id,
                  "files": list(item.files), "endpoint": endpoint,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_json(folder / DONE, record)
        if item.assemble and not keep_parts:
            for f in files:
                f.unlink(missing_ok=True)  # the record keeps `get` idempotent without them
        log(f"{item.name}: done ({out}, {record['bytes']:,} bytes)")
        done.append(out)
    return done


def remove_partial(folder: Path) -> None:
    """Forget a partial item (used by `data get --restart`)."""
    shutil.rmtree(folder, ignore_errors=True)
