"""Files laid out as Search-R1's (FlashRAG's) index_builder writes them: a corpus jsonl of
`{"id", "contents": '"Title"\\ntext'}` and `<method>_Flat.index` (faiss index_factory "Flat",
inner product, normalised vectors of `contents`), row i = line i. Real MiniLM vectors of
real Wikipedia passages (the embedded corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

from search_envs.corpus import Passage, iter_passages, resolve_corpus

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def first_passages(n: int) -> list[Passage]:
    return [p for _, p in zip(range(n), iter_passages(resolve_corpus(None)))]


def contents(p: Passage) -> str:
    return f'"{p.title}"\n{p.text}'


def encode_passages(encoder, passages: list[Passage]) -> np.ndarray:
    return encoder.encode([contents(p) for p in passages], batch_size=64, normalize_embeddings=True).astype(np.float32)


def write_layout(root: Path, passages: list[Passage], vectors: np.ndarray, first_id: int = 0,
                 name: str = "minilm_Flat.index") -> tuple[Path, Path]:
    """Write `corpus.jsonl` and the faiss index into root; ids are first_id, first_id + 1, ..."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(first_id + i), "contents": contents(p)}) + "\n"
                              for i, p in enumerate(passages)))
    index = faiss.index_factory(vectors.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    faiss.write_index(index, str(root / name))
    return corpus, root / name
