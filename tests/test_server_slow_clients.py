"""The retrieval server against slow and stuck clients (real sockets on 127.0.0.1), and its
start-up checks of its own settings."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from conftest import wait_until

from search_envs.cli import main
from search_envs.server import ServerLimits, running_server

PARTIAL_BODY = (b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{\"queries\"")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def logs():
    handler = Records()
    names = ("search_envs.server", "uvicorn.error", "uvicorn")
    ours = logging.getLogger("search_envs.server")
    level = ours.level
    ours.setLevel(logging.INFO)
    for name in names:
        logging.getLogger(name).addHandler(handler)
    yield handler.records
    for name in names:
        logging.getLogger(name).removeHandler(handler)
    ours.setLevel(level)


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if it kept the connection open."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except socket.timeout:
        return None
    except ConnectionResetError:
        pass
    return data


def served_all_before(port: int) -> None:
    """Returns once the server has answered a request on a new connection and closed it. The
    server accepts connections in the order they arrived, so every connection opened before
    this one has been accepted (and counts as open), and this one no longer does. Instead of
    sleeping for a guessed time, which a loaded machine can outlast."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (closed_within(s, 60) or b"").startswith(b"HTTP/1.1 200")


def test_slow_and_stuck_clients_are_timed_out_and_bounded(bm25_engine, logs):
    timeout = 2.0  # all 55 connections below must be open at once, so opening them must take less (it takes ms)
    wait = 5 * timeout  # for the server to close a connection; without its limits it never does
    limits = ServerLimits(request_timeout_s=timeout, max_connections=20)
    with running_server(bm25_engine, limits=limits) as url:
        port = int(url.rsplit(":", 1)[1])
        slow_bodies = []
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(PARTIAL_BODY)
            slow_bodies.append(s)
        no_headers = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /retrieve HTTP/1.1\r\nHost: x\r\n")  # headers never finish
            no_headers.append(s)
        served_all_before(port)
        extra = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]  # over max_connections
        try:
            over = [closed_within(s, wait) for s in extra]
            assert all(o is not None for o in over)  # 35 over the cap closed at once, 5 idle ones after the timeout
            answers = [closed_within(s, wait) for s in slow_bodies]
            assert all(a is not None and a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
            assert all(closed_within(s, wait) is not None for s in no_headers)
            # the server still serves
            r = httpx.post(f"{url}/retrieve", json={"queries": ["Hamlet"], "topk": 2}, timeout=60)
            assert r.status_code == 200 and len(r.json()["result"][0]) == 2
        finally:
            for s in slow_bodies + no_headers + extra:
                s.close()
        # clients that go away mid-body: a log line each, no traceback
        gone = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(PARTIAL_BODY)
            gone.append(s)
        served_all_before(port)  # their requests have begun (their data came before this one's)
        for s in gone:
            s.close()
        wait_until(lambda: sum("went away" in r.getMessage() for r in logs) == 5, 60, "5 'went away' log lines")
    assert not [r for r in logs if r.exc_info or r.levelno >= logging.ERROR]
    messages = [r.getMessage() for r in logs]
    assert sum(f"not received within {timeout:g}s" in m for m in messages) == 10
    assert sum(f"no request within {timeout:g}s" in m for m in messages) == 5 + 5  # stuck headers, idle extras under the cap
    assert sum("over 20 open connections" in m for m in messages) == 35
    assert sum("went away" in m for m in messages) == 5


@pytest.mark.parametrize("settings,problem", [
    ({"default_topk": 1000}, "default topk"),
    ({"default_topk": 0}, "default topk"),
    ({"max_queries": 0}, "max_queries"),
    ({"request_timeout_s": 0}, "request_timeout_s"),
])
def test_bad_settings_fail_at_start_up(settings, problem):
    with pytest.raises(ValueError, match=problem):
        ServerLimits(**settings)


def test_serve_refuses_a_topk_over_the_limit_before_loading_anything(capsys, tmp_path):
    assert main(["serve", "--index", str(tmp_path / "absent"), "--topk", "1000", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "topk" in err and "absent" not in err  # refused before opening the index (which is not there)
