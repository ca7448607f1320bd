"""A local append-only spool for audit events that Redis could not take.

One file per process (``<pid>-<nonce>.spool`` under the spool directory), one JSON line per
record, written with ``O_APPEND`` and fsync'd before :meth:`Spool.append` returns, so an
acknowledged record survives SIGKILL of the process (and of the machine, once the directory
entry is synced, which happens when the file is created). A torn last line, from a process
killed mid-write, was never acknowledged and is dropped on replay.

Replay takes an exclusive ``fcntl.flock`` on a file without waiting (another process replaying
it means skip it), hands each record in file order to the sink, and empties the file only when
every record was taken; a sink failure leaves the file for the next attempt, so the sink must be
idempotent. The owner takes the same lock for each append, so a record is never half-read. An
empty file whose owner process is gone is removed.

Imports: the standard library and orjson only.
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

SUFFIX = ".spool"
Record = dict[str, Any]


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._path: Path | None = None

    # -- writing (the owner) --------------------------------------------------------------------
    def _own_fd(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # after a fork the child needs its own file
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._pid = os.getpid()
            _fsync_directory(self.directory)
        return self._fd

    def append(self, record: Record) -> None:
        """Write one record and fsync it. Raises OSError when the disk does not take it."""
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            fd = self._own_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"short write to the audit spool ({written} of {len(line)} bytes)")
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def own_records(self) -> bool:
        """Whether this process's own file still holds records (another process may have replayed it)."""
        with self._lock:
            if self._fd is None or self._pid != os.getpid():
                return False
            return os.fstat(self._fd).st_size > 0

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    # -- replaying (any process) ----------------------------------------------------------------
    def files(self) -> list[Path]:
        try:
            found = [p for p in self.directory.iterdir() if p.name.endswith(SUFFIX)]
        except FileNotFoundError:
            return []
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns if p.exists() else 0, p.name))

    def has_records(self) -> bool:
        return any(_size(p) > 0 for p in self.files())

    def replay(self, sink: Callable[[Record], None]) -> int:
        """Hand every complete record of every spool file to ``sink``, in order; return how many.

        Stops at the first sink failure (the exception propagates) with that file left intact.
        """
        total = 0
        for path in self.files():
            total += self._replay_file(path, sink)
        return total

    def _replay_file(self, path: Path, sink: Callable[[Record], None]) -> int:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is replaying it (or its owner is appending): next round
            try:
                data = _read_all(fd)
                count = 0
                for line in data.split(b"\n")[:-1]:  # the part after the last newline is torn or empty
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # cannot be a completed append: those are whole JSON lines
                    sink(record)
                    count += 1
                os.ftruncate(fd, 0)
                os.fsync(fd)
                if not _owner_alive(path):
                    path.unlink(missing_ok=True)
                return count
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _owner_alive(path: Path) -> bool:
    pid_text = path.name.split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
