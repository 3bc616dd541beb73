"""Deterministic wiki-18-shaped corpora: FlashRAG jsonl rows of 100-word passages.

    python benchmarks/make_corpus.py 1000000 corpora/synth_1m.jsonl [--seed 0]

Each row is `{"id": "<n>", "contents": "\\"Title\\"\\n<100 words>"}` like Search-R1's
wiki-18 (21,015,324 such rows, ~13 GiB). The title is a real Wikipedia title and the
text five 20-word runs of real Wikipedia text (the embedded lead sections) from random
places, so word frequencies, phrase structure and passage length are wiki-like while the
corpus can be any size. Same size and seed, same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

RUN, RUNS = 20, 5


def write_corpus(n: int, path: str | Path, seed: int = 0, random_tokens: int = 0) -> Path:
    """`random_tokens` > 0 appends that many random 7-letter tokens to each passage (a
    separate random stream: the rest is unchanged), a long-tail vocabulary like real
    wiki-18's names and numbers: ~4M distinct terms at 1M passages with 4."""
    from search_envs.data import embedded_articles

    articles = embedded_articles()
    titles = [a.title for a in articles]
    words = np.asarray([w for a in articles for w in a.text.split()], dtype=object)
    rng = np.random.default_rng(seed)
    tail_rng = np.random.default_rng(seed + 1_000_003)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for start in tqdm(range(0, n, 10_000), desc="corpus", unit_scale=10_000, unit="passage"):
            m = min(10_000, n - start)
            title_ix = rng.integers(0, len(titles), size=m)
            offsets = rng.integers(0, len(words) - RUN, size=(m, RUNS))
            take = (offsets[:, :, None] + np.arange(RUN)).reshape(m, RUN * RUNS)
            rows = words[take]
            if random_tokens:
                tail = ["".join(t) for t in letters[tail_rng.integers(0, 26, size=(m * random_tokens, 7))]]
                rows = np.concatenate([rows, np.asarray(tail, dtype=object).reshape(m, random_tokens)], axis=1)
            f.writelines(
                json.dumps({"id": str(start + j), "contents": f'"{titles[title_ix[j]]}"\n' + " ".join(rows[j])}, ensure_ascii=False) + "\n"
                for j in range(m)
            )
    tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("passages", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-tokens", type=int, default=0, help="random 7-letter tokens appended to each passage (long-tail vocabulary)")
    args = parser.parse_args()
    print(write_corpus(args.passages, args.out, args.seed, args.random_tokens))


if __name__ == "__main__":
    main()
