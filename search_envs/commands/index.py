"""`search-envs index build|info|import`: build a local retrieval index, show and check one,
or adopt a Search-R1/FlashRAG faiss index and its corpus without copying them."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build or inspect a local retrieval index")
    cmds = p.add_subparsers(dest="index_command", required=True)

    b = cmds.add_parser("build", help="build an index directory (atomically) from a corpus")
    b.add_argument("--corpus", default="embedded", help='jsonl corpus file, or "embedded" (default)')
    b.add_argument("--kind", choices=("bm25", "dense", "hybrid"), default="bm25")
    b.add_argument("--out", required=True, help="index directory to create")
    b.add_argument("--force", action="store_true", help="replace --out if it exists")
    b.add_argument("--skip-bad", action="store_true", help="skip (and count) unparsable corpus lines")
    b.add_argument("--passage-words", type=int, default=None, help="chunk size in words (default 100)")
    g = b.add_argument_group("bm25")
    g.add_argument("--scheme", choices=("lucene", "bm25s"), default=None,
                   help="lucene (default): Pyserini's BM25, k1=0.9 b=0.4; bm25s: the older k1=1.5 b=0.75 Snowball one")
    g.add_argument("--k1", type=float, default=None)
    g.add_argument("--b", type=float, default=None)
    g.add_argument("--memory-mb", type=int, default=None, help="working memory bound of the build (default 1024)")
    g = b.add_argument_group("dense")
    g.add_argument("--model", default=None, help="sentence-transformers name or path (default all-MiniLM-L6-v2)")
    g.add_argument("--faiss", choices=("flat", "hnsw", "ivfpq"), default=None)
    g.add_argument("--query-prefix", default=None, help='e.g. "query: " for e5 (default: by model family)')
    g.add_argument("--passage-prefix", default=None, help='e.g. "passage: " for e5')
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--device", default=None, help="cpu, cuda, ...")
    g.add_argument("--hnsw-m", type=int, default=None)
    g.add_argument("--ef-construction", type=int, default=None)
    g.add_argument("--ef-search", type=int, default=None)
    g.add_argument("--nlist", type=int, default=None)
    g.add_argument("--pq-m", type=int, default=None)
    g.add_argument("--pq-bits", type=int, default=None)
    g.add_argument("--nprobe", type=int, default=None)
    g.add_argument("--rerank", type=int, default=None,
                   help="ivfpq: re-score this many candidates exactly from float16 vectors on disk (0: off)")
    b.set_defaults(func=run_build)

    i = cmds.add_parser("info", help="print an index's manifest and verify its files")
    i.add_argument("dir")
    i.add_argument("--corpus", default=None, help="also check the index was built from this corpus")
    i.add_argument("--quick", action="store_true", help="check sizes only, not sha256 sums")
    i.set_defaults(func=run_info)

    m = cmds.add_parser("import", help="adopt a Search-R1/FlashRAG faiss index + corpus jsonl (linked, not copied)")
    m.add_argument("--faiss-index", default=None, help="e.g. e5_Flat.index (default with --from-data: the downloaded one)")
    m.add_argument("--corpus", default=None, help="the corpus jsonl whose line i is the index's row i")
    m.add_argument("--from-data", action="store_true",
                   help="use wiki-18 and wiki-18-e5-flat as `search-envs data get` left them")
    m.add_argument("--out", default=None,
                   help="index directory to create (default with --from-data: where the searchr1 suite looks)")
    m.add_argument("--model", default=None, help="the encoder the index was built with (default intfloat/e5-base-v2)")
    m.add_argument("--query-prefix", default=None, help='default by model family ("query: " for e5)')
    m.add_argument("--passage-prefix", default=None)
    m.add_argument("--force", action="store_true", help="replace --out if it exists")
    m.set_defaults(func=run_import)


PARAMS = ("passage_words", "scheme", "k1", "b", "memory_mb", "model", "faiss", "query_prefix", "passage_prefix", "batch_size", "device",
          "hnsw_m", "ef_construction", "ef_search", "nlist", "pq_m", "pq_bits", "nprobe", "rerank")


def run_build(args: argparse.Namespace) -> int:
    from search_envs.index import build_index

    params = {k: getattr(args, k) for k in PARAMS if getattr(args, k) is not None}
    try:
        out = build_index(args.corpus, args.kind, args.out, overwrite=args.force, skip_bad=args.skip_bad, **params)
    except FileExistsError as exc:
        print(f"search-envs: error: {exc}", file=sys.stderr)
        return 2
    return run_info(argparse.Namespace(dir=str(out), corpus=None, quick=True))


def run_info(args: argparse.Namespace) -> int:
    from search_envs.index import check_index

    manifest = check_index(args.dir, corpus=args.corpus, deep=not args.quick)
    files = manifest.pop("files")
    print(json.dumps(manifest, indent=2))
    total = sum(meta["bytes"] for meta in files.values())
    print(f"{len(files)} files, {total / 1e6:.1f} MB: " + ", ".join(f"{n} ({m['bytes']:,} B)" for n, m in files.items()))
    print(f"OK: {args.dir} is a valid {manifest['kind']} index ({'sizes' if args.quick else 'sizes and sha256 sums'} checked)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from search_envs.index_import import SEARCH_R1_MODEL, import_faiss_index

    index_file, corpus = args.faiss_index, args.corpus
    if args.from_data:
        from search_envs.hub import item_path

        from search_envs.hub import searchr1_index_dir

        index_file = index_file or item_path("wiki-18-e5-flat")
        corpus = corpus or item_path("wiki-18")
        args.out = args.out or searchr1_index_dir()
    if index_file is None or corpus is None or args.out is None:
        print("search-envs: error: give --faiss-index, --corpus and --out (or --from-data)", file=sys.stderr)
        return 2
    try:
        out = import_faiss_index(index_file, corpus, args.out, model=args.model or SEARCH_R1_MODEL,
                                 query_prefix=args.query_prefix, passage_prefix=args.passage_prefix,
                                 overwrite=args.force)
    except FileExistsError as exc:
        print(f"search-envs: error: {exc}", file=sys.stderr)
        return 2
    return run_info(argparse.Namespace(dir=str(out), corpus=None, quick=False))
