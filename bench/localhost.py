"""Plumbing shared by the benchmarks: ports, HTTP to 127.0.0.1, processes, RSS, progress.

Only 127.0.0.1 is ever contacted (:func:`request` refuses anything else). Processes are
stopped by the PID (or process group) that we started, never by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
Progress = Callable[[str], None]  # told each step of a long run, e.g. to print it


def quiet(step: str) -> None:
    """A :data:`Progress` that says nothing."""


class BenchError(RuntimeError):
    """A benchmark step failed (server did not start, wrong answer, tool missing...)."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host != LOOPBACK:
        raise BenchError(f"refusing to target {host!r}: benchmarks only talk to {LOOPBACK}")


def request(
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> tuple[int, bytes]:
    """(status, body) of one GET (or POST when ``body`` is given); HTTP errors are returned, not raised."""
    require_loopback(url)
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def post_json(url: str, payload: Any, *, token: str | None = None, timeout_s: float = 10.0) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, raw = request(url, body=data, headers=headers, timeout_s=timeout_s)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], *, timeout_s: float, log: Path | None = None) -> float:
    """Poll ``url`` until it answers 200; seconds waited. Fails early if ``proc`` exits."""
    start = time.monotonic()
    deadline = start + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"process exited with {proc.returncode} before {url} was ready{log_tail(log)}")
        try:
            status, _ = request(url, timeout_s=1.0)
        except OSError:
            status = 0
        if status == 200:
            return time.monotonic() - start
        time.sleep(0.2)
    raise BenchError(f"{url} not ready after {timeout_s:.0f} s{log_tail(log)}")


def unix_request(path: Path, method: str, target: str, *, body: bytes = b"", token: str | None = None,
                 timeout_s: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one request over a Unix socket (the server closes after answering)."""
    head = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close", f"Content-Length: {len(body)}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def wait_unix_ok(path: Path, target: str, proc: subprocess.Popen[bytes], *, timeout_s: float,
                 log: Path | None = None) -> float:
    """:func:`wait_http_ok` over a Unix socket."""
    start = time.monotonic()
    while time.monotonic() < start + timeout_s:
        if proc.poll() is not None:
            raise BenchError(f"process exited with {proc.returncode} before {path} was ready{log_tail(log)}")
        try:
            if unix_request(path, "GET", target, timeout_s=1.0)[0] == 200:
                return time.monotonic() - start
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.2)
    raise BenchError(f"{path} not ready after {timeout_s:.0f} s{log_tail(log)}")


def log_tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(tail)


def stop_group(proc: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc`` (started with ``start_new_session``), then SIGKILL."""
    pgid = proc.pid
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(pgid):
                return
            time.sleep(0.1)
    proc.poll()


def stop_pid(proc: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> None:
    """SIGTERM one process we started, SIGKILL it after ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5.0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies still count as members until reaped; a group of zombies only is as good as gone
    return any(_state(pid) not in ("Z", "") for pid in _pids() if _pgid(pid) == pgid)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat_fields(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # the command name is in parentheses and may hold spaces: split after the last ')'
    return raw[raw.rfind(")") + 2 :].split()


def _state(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[0] if fields else ""


def _pgid(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[2]) if fields else -1


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (scans /proc: this kernel has no /proc/PID/task/TID/children)."""
    return sorted(p for p in _pids() if (f := _stat_fields(p)) and int(f[1]) == pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) in seconds; 0 if it is gone."""
    fields = _stat_fields(pid)
    if len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid`` and each live descendant, by ``comm:pid``.

    CPU time spent is what a request costs whatever else runs on the machine: on a shared VM,
    the difference of two snapshots divided by the requests served between them is a per-request
    cost that requests per second under contention are not.
    """
    found: dict[str, float] = {}
    pending = [pid]
    while pending:
        current = pending.pop(0)
        found[f"{comm(current)}:{current}"] = cpu_seconds(current)
        pending.extend(children(current))
    return found


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> float:
    """CPU seconds spent between two :func:`tree_cpu_seconds` snapshots (processes alive in both,
    or started in between)."""
    return sum(value - before.get(name, 0.0) for name, value in after.items())


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in kB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpus_allowed(pid: int) -> str:
    """The CPU affinity of ``pid`` as the kernel lists it (``"1"`` when pinned to CPU 1)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
