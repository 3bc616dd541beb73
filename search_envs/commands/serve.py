"""`search-envs serve`: a Search-R1-protocol retrieval server over a local index."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

API_KEY_ENV = "SEARCH_ENVS_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an index over HTTP (POST /retrieve, Search-R1's protocol; POST /queries, R1-Searcher's)",
        description="Serve a local index with Search-R1's /retrieve protocol and dynamic micro-batching.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--index", help="a built index directory (`search-envs index build`)")
    src.add_argument("--engine", choices=("bm25", "dense", "hybrid"), default=None,
                     help="without --index: this engine over --corpus, built into the cache on first use "
                          "(default bm25)")
    p.add_argument("--corpus", default=None, help="with --engine: a corpus file (default: embedded Wikipedia)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on /retrieve (or set ${API_KEY_ENV})")
    p.add_argument("--topk", type=int, default=3, help="documents per query when a request gives no topk")
    p.add_argument("--max-batch-size", type=int, default=256, help="queries merged into one engine call")
    p.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a batch waits for more requests (0: batch what queued while the engine was busy)")
    p.add_argument("--max-queries", type=int, default=None,
                   help="queries allowed in one request (default 16384; a whole Search-R1 GRPO step is 2560)")
    p.add_argument("--max-query-chars", type=int, default=None, help="characters allowed in one query (default 16384)")
    p.add_argument("--max-body-mb", type=float, default=None, help="largest request body in MiB (default 64)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search_envs.server import ServerLimits, serve

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not _is_loopback(args.host) and api_key is None:
        print(f"warning: serving on {args.host} without an API key: anyone who can reach it can query it",
              file=sys.stderr)
    bounds = {"max_queries": args.max_queries, "max_query_chars": args.max_query_chars,
              "max_body_bytes": None if args.max_body_mb is None else int(args.max_body_mb * 2**20)}
    limits = ServerLimits(default_topk=args.topk, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                          **{name: value for name, value in bounds.items() if value is not None})
    engine = _open(args)
    print(f"serving {engine.name} on http://{args.host}:{args.port}/retrieve", file=sys.stderr, flush=True)
    try:
        serve(engine, host=args.host, port=args.port, api_key=api_key, limits=limits, log_level=args.log_level)
    finally:
        engine.close()
    return 0


def _open(args: argparse.Namespace):
    from search_envs.engines import load_index, open_engine

    if args.index:
        return load_index(args.index)
    return open_engine(args.engine or "bm25", corpus=args.corpus)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
