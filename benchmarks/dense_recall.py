"""Recall@10 of approximate faiss indexes against exact (Flat) search, on REAL MiniLM vectors.

The passages are the embedded Wikipedia corpus chunked as the engines chunk it (100 words),
encoded once with all-MiniLM-L6-v2 (the default encoder) and cached under
`cache_dir()/embeddings/`; the queries are real questions (the seven QA datasets of the shared
data when `SEARCH_ENVS_DATA` is set, else the embedded RAMP test questions). For each index we
report recall@10 against Flat's top 10, the serialized index bytes per vector (what it holds in
memory), build seconds and single-thread q/s, and the engine defaults (`make_faiss_index`) are
measured too, so the defaults that `search-envs index build --faiss hnsw|ivfpq` uses are the
ones the table shows.

    OMP_NUM_THREADS=1 python benchmarks/dense_recall.py            # encodes once (~5-10 min on 2 shared cores)
    OMP_NUM_THREADS=1 python benchmarks/dense_recall.py --no-readme
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import append_readme, markdown_table  # noqa: E402

K = 10
WIKI18 = 21_015_324


def passage_vectors(batch_size: int = 64) -> np.ndarray:
    """MiniLM vectors of the embedded corpus's passages, encoded once and cached as .npy."""
    from tqdm.auto import tqdm

    from search_envs.corpus import file_sha256, iter_passages, resolve_corpus
    from search_envs.data import cache_dir
    from search_envs.engines.dense import DEFAULT_MODEL, embedding_dim, encode, load_encoder

    corpus = resolve_corpus(None)
    path = cache_dir() / "embeddings" / f"{file_sha256(corpus)[:12]}-all-MiniLM-L6-v2-w100.npy"
    if path.is_file():
        return np.load(path)
    passages = [f"{p.title}\n{p.text}" for p in iter_passages(corpus)]  # the text DenseEngine.build encodes
    encoder = load_encoder(DEFAULT_MODEL)
    out = np.empty((len(passages), embedding_dim(encoder)), dtype=np.float32)
    with tqdm(total=len(passages), desc="encoding passages (MiniLM)", unit="passage") as bar:
        for i in range(0, len(passages), 256):
            out[i : i + 256] = encode(encoder, passages[i : i + 256], batch_size)
            bar.update(len(passages[i : i + 256]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.rename(path)  # atomic: a killed run leaves no half cache
    return out


def query_vectors() -> tuple[np.ndarray, str]:
    from search_envs.data import shared_data_dir
    from search_envs.datasets import load_tasks
    from search_envs.engines.dense import DEFAULT_MODEL, encode, load_encoder

    root = shared_data_dir()
    parquet = root / "qa" / "deepresearcher_dev_7datasets.parquet" if root else None
    if parquet is not None and parquet.is_file():
        tasks, source = load_tasks(str(parquet)), "the 875 questions of the seven QA datasets (shared data)"
    else:
        tasks, source = load_tasks("ramp:test"), "the embedded RAMP test questions"
    questions = [t.question for t in tasks]
    return encode(load_encoder(DEFAULT_MODEL), questions, 64), source


def measure(name: str, index, xb: np.ndarray, xq: np.ndarray, truth: np.ndarray, flat_per_vector: float,
            key: str | None = None, values: tuple = (None,), rerank: tuple[int, ...] = ()) -> list[dict]:
    """Build `index` once, then one row per search setting (and per re-rank depth, where
    candidates are re-scored with the engine's `rerank_exact` from float16 vectors on disk).
    Memory is per vector: the serialized index's growth when the vectors are added (codes,
    ids, graph links), so trained centroids, a fixed cost, do not inflate the 21M figure."""
    import faiss

    from search_envs.engines.dense import rerank_exact

    t0 = time.perf_counter()
    if not index.is_trained:
        index.train(xb)
    empty = len(faiss.serialize_index(index))
    index.add(xb)
    build = time.perf_counter() - t0
    per_vector = (len(faiss.serialize_index(index)) - empty) / len(xb)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "v.npy", xb.astype(np.float16))
        disk = np.load(Path(tmp) / "v.npy", mmap_mode="r")
        for value in values:
            if key == "ef_search":
                index.hnsw.efSearch = value
            elif key == "nprobe":
                faiss.extract_index_ivf(index).nprobe = value
            for depth in (0, *rerank):
                t0 = time.perf_counter()
                if depth:
                    _, cand = index.search(xq, depth)
                    ids, _ = rerank_exact(cand, xq, disk, K)
                else:
                    _, ids = index.search(xq, K)
                secs = time.perf_counter() - t0
                recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth)])
                label = name + (f", {key}={value}" if key else "") + (f", re-rank {depth} (float16 on disk)" if depth else "")
                rows.append({
                    "index": label,
                    "recall@10 vs Flat": round(float(recall), 3),
                    "RAM bytes/vector": round(per_vector, 1),
                    "RAM vs Flat": f"1/{flat_per_vector / per_vector:.1f}" if per_vector < flat_per_vector
                    else f"{per_vector / flat_per_vector:.2f}x",
                    "build s": round(build, 1),
                    "q/s (1 thread)": round(len(xq) / secs),
                    "wiki-18 RAM GB (384-d)": round(per_vector * WIKI18 / 1e9, 1),
                })
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--defaults-only", action="store_true", help="only Flat and the engines' default indexes")
    args = parser.parse_args()

    import faiss

    from search_envs.engines.dense import DenseEngine, make_faiss_index

    faiss.omp_set_num_threads(1)
    xb = passage_vectors()
    xq, source = query_vectors()
    n, d = xb.shape
    flat = faiss.IndexFlatIP(d)
    flat.add(xb)
    _, truth = flat.search(xq, K)
    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
    ip = faiss.METRIC_INNER_PRODUCT
    rows = measure("Flat (exact)", faiss.IndexFlatIP(d), xb, xq, truth, 4.0 * d)
    grid = not args.defaults_only
    rows += [] if not grid else measure("HNSW32 (efConstruction 80)", _hnsw(d, 32), xb, xq, truth, 4.0 * d, "ef_search", (16, 64, 128))
    for m in (48, 96) if grid else ():
        rows += measure(f"IVF{nlist},PQ{m}x8", faiss.index_factory(d, f"IVF{nlist},PQ{m}x8", ip), xb, xq, truth,
                        4.0 * d, "nprobe", (16, 32, 64), rerank=(50, 100))
    rows += [] if not grid else measure(f"IVF{nlist},SQ4", faiss.index_factory(d, f"IVF{nlist},SQ4", ip), xb, xq, truth, 4.0 * d,
                    "nprobe", (16, 32))
    # the engines' own defaults, exactly as `index build --faiss hnsw|ivfpq` makes and searches them
    defaults = inspect.signature(DenseEngine.build).parameters
    for kind, key in (("hnsw", "ef_search"), ("ivfpq", "nprobe")):
        index, params = make_faiss_index(kind, d, n)
        label = f"engine default --faiss {kind} (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
        depth = defaults["rerank"].default if kind == "ivfpq" else 0
        found = measure(label, index, xb, xq, truth, 4.0 * d, key, (defaults[key].default,), rerank=(depth,) if depth else ())
        rows.append(found[-1])

    columns = list(rows[0])
    table = markdown_table(rows, columns)
    print(table)
    if not args.no_readme:
        body = (
            f"{n:,} real MiniLM (all-MiniLM-L6-v2, 384-d) passage vectors of the embedded Wikipedia corpus "
            f"(cached in `cache_dir()/embeddings/`); queries: {source} ({len(xq)}); recall@10 = overlap with "
            "Flat's top 10. RAM bytes/vector = growth of the serialized index when the vectors are added (codes, "
            "ids, graph links; trained centroids are a fixed cost left out). Re-ranked rows also keep float16 "
            "vectors on disk (768 B/vector, memory-mapped, only the candidates' rows read). Single-threaded "
            "(`OMP_NUM_THREADS=1`, niced) on a shared 2-core machine under heavy load: q/s and build seconds are "
            "indicative only. The wiki-18 column multiplies by 21,015,324 passages (extrapolated, 384-d).\n\n" + table
        )
        append_readme("Dense recall on real MiniLM vectors", body)


def _hnsw(d: int, m: int):
    import faiss

    index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    return index


if __name__ == "__main__":
    main()
