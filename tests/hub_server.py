"""A small fake Hugging Face hub on 127.0.0.1: the `resolve` endpoint that
`huggingface_hub.hf_hub_download` calls (HEAD for the commit, ETag and size, GET with
Range for the bytes), over files the test provides. It can advertise a wrong checksum,
send slowly (so a test can kill a download mid-way) and drop the first connection
after some bytes (so the client has to resume)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True  # ETag: sha256 (LFS) or git blob sha1
    bad_etag: bool = False
    bytes_per_s: float | None = None  # throttle (past `slow_after` bytes)
    slow_after: int = 0
    cut_after: int | None = None  # the first GET stops after this many bytes


@dataclass
class FakeHub:
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, range)
    url: str = ""
    _cut_done: set = field(default_factory=set)

    def add(self, repo_id: str, filename: str, data: bytes, **kw) -> None:
        self.files[(repo_id, filename)] = HubFile(data, **kw)

    def gets(self, filename: str) -> list[str]:
        """The Range header of every GET of `filename` ("" for none)."""
        return [rng for method, path, rng in self.log if method == "GET" and path.endswith("/" + filename)]


def etag(f: HubFile) -> str:
    if f.lfs:
        digest = hashlib.sha256(f.data).hexdigest()
    else:
        digest = hashlib.sha1(f"blob {len(f.data)}\0".encode() + f.data).hexdigest()
    return ("0" * 64 if f.lfs else "0" * 40) if f.bad_etag else digest


def start(hub: FakeHub) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _file(self) -> tuple[str, HubFile | None]:
            m = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
            if not m:
                return "", None
            return m.group(3), hub.files.get((m.group(1), m.group(3)))

        def _headers(self, f: HubFile, status: int, start: int) -> None:
            self.send_response(status)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etag(f)}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(f.data) - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(f.data) - 1}/{len(f.data)}")
            self.end_headers()

        def _missing(self) -> None:
            body = b'{"error": "Entry not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            hub.log.append(("HEAD", self.path, ""))
            name, f = self._file()
            if f is None:
                return self._missing()
            self._headers(f, 200, 0)

        def do_GET(self) -> None:
            rng = self.headers.get("Range", "")
            hub.log.append(("GET", self.path, rng))
            name, f = self._file()
            if f is None:
                return self._missing()
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1)) if m else 0
            self._headers(f, 206 if start else 200, start)
            stop = len(f.data)
            if f.cut_after is not None and name not in hub._cut_done:
                hub._cut_done.add(name)
                stop = min(stop, start + f.cut_after)
            pos = start
            step = 16384
            while pos < stop:
                chunk = f.data[pos : min(pos + step, stop)]
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except OSError:
                    return
                pos += len(chunk)
                if f.bytes_per_s and pos >= f.slow_after:
                    time.sleep(len(chunk) / f.bytes_per_s)
            if stop < len(f.data):
                self.close_connection = True  # a dropped connection mid-body

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server
