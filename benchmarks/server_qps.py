"""Retrieval queries per second: raw bm25s vs our engine vs the HTTP server under load.

1. raw bm25s: `bm25s.tokenize` + `BM25.retrieve` on the engine's passages, same k1/b;
   engine: `BM25Engine.search` on the same queries (adds Document objects read from
   the passage store). Batches of 1 and of 64 queries. The overhead column is the
   engine's extra time over raw bm25s.
2. server: `search-envs serve` in a subprocess; C concurrent clients (asyncio +
   httpx, one query per request, Search-R1's JSON) for C = 1..256, with dynamic
   micro-batching on (max batch 256) and off (max batch 1): q/s, p50/p99 latency,
   errors. Client and server share this machine's cores.

    python benchmarks/server_qps.py
    python benchmarks/server_qps.py --clients 1 16 64 --requests 300 --no-readme
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import append_readme, markdown_table, save_figure  # noqa: E402
from search_envs.datasets import load_tasks  # noqa: E402
from search_envs.engines import open_engine  # noqa: E402
from benchmarks.bm25s_baseline import raw_bm25s  # noqa: E402


def make_queries(n: int) -> list[str]:
    questions = [t.question.replace("[mask]", " ") for t in load_tasks("ramp")]
    return [" ".join(questions[i % len(questions)].split()[(i // len(questions)) % 5:][:10]) for i in range(n)]


def best_of_interleaved(fns, repeat: int = 5) -> list[float]:
    """Each function's fastest of `repeat` runs, the runs interleaved so that load from other
    jobs on a shared machine hits all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def engine_overhead(queries: list[str], k: int) -> list[dict]:
    engine = open_engine("bm25")
    retrieve = raw_bm25s(engine)
    rows = []
    for batch in (1, 64):
        chunks = [queries[i : i + batch] for i in range(0, len(queries), batch)]

        def raw():
            for c in chunks:
                retrieve(c, k)

        def ours():
            for c in chunks:
                engine.search(c, k)

        raw(), ours()  # warm up
        t_raw, t_ours = best_of_interleaved([raw, ours])
        rows.append({"batch": batch, "raw bm25s q/s": len(queries) / t_raw, "engine q/s": len(queries) / t_ours,
                     "overhead %": 100 * (t_ours - t_raw) / t_raw})
        print(rows[-1], flush=True)
    engine.close()
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index_dir: str, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "search_envs.cli", "serve", "--index", index_dir, "--port", str(port),
         "--max-batch-size", str(max_batch), "--log-level", "warning"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the server did not start")


async def load(url: str, queries: list[str], clients: int, k: int) -> dict:
    """`clients` concurrent clients, each with its own keep-alive connection (one shared
    httpx pool of many connections costs more client CPU per request than the server does)."""
    latencies: list[float] = []
    errors = 0
    it = iter(queries)

    async def client():
        nonlocal errors
        # verify=False: plain http here, and it skips loading the CA bundle once per client
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1), verify=False) as http:
            for q in it:
                start = time.perf_counter()
                try:
                    r = await http.post(f"{url}/retrieve", json={"queries": [q], "topk": k, "return_scores": True})
                    ok = r.status_code == 200 and len(r.json()["result"]) == 1
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"q/s": len(latencies) / elapsed, "p50 ms": float(np.percentile(lat, 50)),
            "p99 ms": float(np.percentile(lat, 99)), "errors": errors, "requests": len(latencies)}


def server_rows(index_dir: str, queries: list[str], clients: list[int], requests: int, k: int) -> list[dict]:
    rows = []
    for max_batch in (256, 1):
        proc, url = start_server(index_dir, max_batch)
        try:
            asyncio.run(load(url, queries[:64], 8, k))  # warm up
            for c in clients:
                n = max(requests, 2 * c)
                before = httpx.get(f"{url}/health").json()["batches"]
                result = asyncio.run(load(url, queries[:n], c, k))
                calls = httpx.get(f"{url}/health").json()["batches"] - before
                rows.append({"micro-batching": "on" if max_batch > 1 else "off", "clients": c, **result,
                             "queries per engine call": result["requests"] / max(1, calls)})
                print(rows[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16, 64, 256])
    parser.add_argument("--requests", type=int, default=600, help="requests per concurrency level")
    parser.add_argument("--queries", type=int, default=1024, help="queries for the engine-overhead part")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    queries = make_queries(max(args.queries, args.requests, 2 * max(args.clients)))
    overhead = engine_overhead(queries[: args.queries], args.k)
    engine = open_engine("bm25")
    index_dir = str(engine.directory)
    engine.close()
    served = server_rows(index_dir, queries, args.clients, args.requests, args.k)

    t1 = markdown_table(overhead, ["batch", "raw bm25s q/s", "engine q/s", "overhead %"])
    t2 = markdown_table(served, ["micro-batching", "clients", "requests", "q/s", "p50 ms", "p99 ms", "errors",
                                 "queries per engine call"])
    print(t1, t2, sep="\n\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in ("on", "off"):
        mine = [r for r in served if r["micro-batching"] == mode]
        a.plot([r["clients"] for r in mine], [r["q/s"] for r in mine], "o-", label=f"server, micro-batching {mode}")
        b.plot([r["clients"] for r in mine], [r["p99 ms"] for r in mine], "o-", label=f"p99, batching {mode}")
        b.plot([r["clients"] for r in mine], [r["p50 ms"] for r in mine], "x--", label=f"p50, batching {mode}")
    for r in overhead:
        a.axhline(r["raw bm25s q/s"], ls=":", color="gray")
        a.text(1, r["raw bm25s q/s"], f"raw bm25s, batch {r['batch']}", fontsize=7, va="bottom")
    a.set(xscale="log", xlabel="concurrent clients", ylabel="queries / second", title="BM25 retrieval throughput")
    b.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency (ms)", title="request latency")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    save_figure(fig, "server_qps.png")
    if not args.no_readme:
        append_readme("Retrieval q/s: raw bm25s, engine, HTTP server", t1 + "\n\n" + t2)


if __name__ == "__main__":
    main()
