"""A small keep-alive HTTP/1.1 load generator over TCP or a Unix socket (wrk speaks TCP only).

:func:`hammer` keeps ``concurrency`` connections busy with the same request for ``duration_s``
from one thread (``selectors``): each connection sends the request, reads the whole answer
(``Content-Length``), records the latency and sends again. Used by :mod:`bench.uds` to compare
the sidecar over its Unix socket and over TCP with the very same client; pin the calling process
to its own CPU. Only 127.0.0.1 or a socket path.
"""

from __future__ import annotations

import selectors
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.localhost import BenchError


def tcp(port: int) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return connect


def unix(path: str) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(path)
        return sock

    return connect


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.sent_at = 0.0


def _complete(buffer: bytes) -> tuple[int, int] | None:
    """(status, length of the whole answer) once ``buffer`` holds a whole answer."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].decode("latin-1").lower()
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            length = int(value)
    total = end + 4 + length
    return (int(head.split(" ", 2)[1]), total) if len(buffer) >= total else None


def hammer(connect: Callable[[], socket.socket], request: bytes, *, concurrency: int,
           duration_s: float) -> dict[str, Any]:
    """rps, p50/p99 in µs, non-2xx and error counts of one bounded run."""
    selector = selectors.DefaultSelector()
    conns = []
    for _ in range(concurrency):
        conn = _Conn(connect())
        conn.sock.setblocking(False)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conns.append(conn)
    latencies: list[float] = []
    non_2xx = errors = 0
    started = time.perf_counter()
    deadline = started + duration_s
    for conn in conns:
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(request)
    try:
        while (now := time.perf_counter()) < deadline:
            for key, _ in selector.select(timeout=max(0.0, deadline - now)):
                conn = key.data
                try:
                    chunk = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise BenchError("the server closed a keep-alive connection")
                conn.buffer += chunk
                done = _complete(conn.buffer)
                if done is None:
                    continue
                status, length = done
                finished = time.perf_counter()
                latencies.append(finished - conn.sent_at)
                non_2xx += not 200 <= status < 300
                conn.buffer = conn.buffer[length:]
                conn.sent_at = finished
                conn.sock.sendall(request)
    except OSError:
        errors += 1
    finally:
        elapsed = time.perf_counter() - started
        for conn in conns:
            selector.unregister(conn.sock)
            conn.sock.close()
        selector.close()
    if not latencies:
        raise BenchError("no request was answered")
    ordered = sorted(latencies)
    return {"requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50_us": statistics.median(ordered) * 1e6, "p99_us": ordered[int(len(ordered) * 0.99) - 1] * 1e6,
            "non_2xx": non_2xx, "errors": errors, "concurrency": concurrency}
