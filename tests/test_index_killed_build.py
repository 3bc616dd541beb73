"""A killed `index build` leaves `<out>.tmp-*`; the next build of the same index removes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from search_envs.index import build_index, check_index

HOLD = """
import sys
from pathlib import Path
from search_envs.index import atomic_dir
cm = atomic_dir(sys.argv[1])
tmp = cm.__enter__()
(tmp / "passages.jsonl").write_text("half written")
print(tmp, flush=True)
sys.stdin.read()  # building... until killed
"""


def start_builder(out: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_dir() and tmp.name.startswith(f"{out.name}.tmp-{proc.pid}-")
    return proc, tmp


def test_the_next_build_removes_what_a_killed_build_left(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "title": f"T{i}", "text": f"passage number {i} about rivers"}) + "\n"
                              for i in range(30)), encoding="utf-8")
    out = tmp_path / "idx"
    live, live_tmp = start_builder(out)  # another build of the same index, still running
    killed, killed_tmp = start_builder(out)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    legacy = tmp_path / "idx.tmp-1a2b3c4d"  # the name older versions used (no pid)
    legacy.mkdir()
    try:
        assert killed_tmp.is_dir()  # SIGKILL ran no cleanup
        build_index(corpus, "bm25", out, show_progress=False)
        assert check_index(out)["passages"] == 30
        assert not killed_tmp.exists() and not legacy.exists()
        assert live_tmp.is_dir()  # a running build keeps its directory
    finally:
        live.stdin.close()
        live.wait(timeout=30)
    assert os.path.isdir(out)
