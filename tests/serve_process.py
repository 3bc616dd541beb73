"""`search-envs serve --index DIR` in its own process, as a user starts it: the one helper the
tests that need a real server subprocess share (start, wait for /health, kill or stop)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `search-envs serve` subprocess on 127.0.0.1; `with Server(...) as s:` waits until it
    answers /health and stops it afterwards. api_key: required by the server (None: none)."""

    def __init__(self, index_dir: Path, port: int | None = None, api_key: str | None = None) -> None:
        self.index_dir, self.port = index_dir, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        env.pop("SEARCH_ENVS_API_KEY", None)
        if api_key is not None:
            env["SEARCH_ENVS_API_KEY"] = api_key
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "search_envs.cli", "serve", "--index", str(index_dir), "--port", str(self.port),
             "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 120) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail("server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "Server":
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
