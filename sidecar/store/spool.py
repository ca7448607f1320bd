"""A local append-only spool for audit events: the journal of check events, and what Redis refused.

One file per process (``<pid>-<nonce>.spool`` under the spool directory), one JSON line per
record. The owner reserves the file's blocks up front (``posix_fallocate``, :data:`FILE_BYTES`)
and writes records into a shared memory mapping of it, at the end of what it holds: an append is
a copy into the page cache, no system call (a system call releases the GIL, and on a check's
path that hands the interpreter to another request; this one was the only system call a critical
check added). The unused rest of the file is zeros, so a reader takes the records up to the first
NUL byte. Two kinds of append:

* ``sync=True`` (the spool proper: events Redis did not take): the file is fsync'd before
  :meth:`Spool.append` returns, so the record survives SIGKILL of the process and a crash of the
  host (the directory entry is fsync'd when the file is created).
* ``sync=False`` (the journal of critical-check events): the record is in the kernel's page
  cache when ``append`` returns, not on the disk. It survives SIGKILL of the process (the
  kernel still holds the page and writes it back) but not a host crash (power loss, kernel
  panic) before the kernel writes the page back, by default within about 30 s
  (``vm.dirty_expire_centisecs``) -- unless it was shipped to Redis first (within the
  shipper's interval, see :mod:`sidecar.audit.auditor`). An fsync of a later record also makes
  it durable.

Blocks reserved at creation mean a full disk fails the append that creates or grows a file
(OSError, as a refused ``write(2)`` did), never a write into the mapping (which would be SIGBUS).

The owner holds an exclusive ``fcntl.flock`` on its file for as long as it has it open, and
keeps the records it appended in memory, in file order (:meth:`Spool.ship_own` hands them to a
sink in batches and zeroes what the file holds once none is left, so a later record is always
written over zeros; a record that does not fit moves the unshipped records to a new, larger
file). Other processes therefore never read a live owner's file; when the owner dies (SIGKILL
included) the kernel drops its lock and any process can replay the orphaned file
(:meth:`Spool.replay`): it takes the lock without waiting (another process replaying it means
skip it), hands the records in file order to the sink in batches, and empties the file only when
every record was taken; a sink failure leaves the file for the next attempt, so the sink must be
idempotent. A torn last record, from a process killed mid-copy, ends at a NUL without its
newline: it was never acknowledged and is dropped. An empty file whose owner process is gone is
removed. Files written before 2026-12-02 (``O_APPEND``, no zeros) read the same way.

Imports: the standard library and orjson only.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

SUFFIX = ".spool"
Record = dict[str, Any]


BATCH = 200
FILE_BYTES = 4 << 20  # an own file's reserved size; a record that does not fit moves to a new file
Sink = Callable[[list[Record]], None]


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # the own file, its size and the pending records
        self.ship_lock = threading.RLock()  # one shipper of the own records at a time
        self._fd: int | None = None
        self._map: mmap.mmap | None = None  # the own file (its whole reserved size), mapped: records are copied into it
        self._pid = 0
        self._path: Path | None = None
        self._size = 0  # the bytes of records the own file holds (the rest is zeros)
        self._pending: list[Record] = []  # appended to the own file, not yet shipped, in file order

    # -- writing (the owner) --------------------------------------------------------------------
    def _own_map(self) -> mmap.mmap:
        if self._map is None or self._pid != os.getpid():  # after a fork the child needs its own file
            if self._fd is not None and self._map is not None:  # the parent's: file, records, lock stay with it
                self._map.close()  # the child's view only: the parent's stays mapped
                os.close(self._fd)
                self._fd, self._map, self._pending, self._size = None, None, [], 0
            self._fd, self._path, self._map = self._new_file(FILE_BYTES)
            self._pid, self._size = os.getpid(), 0
        return self._map

    def _new_file(self, capacity: int) -> tuple[int, Path, mmap.mmap]:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held while the file is open: no other process reads it
            os.posix_fallocate(fd, 0, capacity)  # a full disk fails here, not as SIGBUS in the mapping
            mapped = mmap.mmap(fd, capacity)
            _fsync_directory(self.directory)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)  # it holds no record yet
            raise
        return fd, path, mapped

    def append(self, record: Record, *, sync: bool = True) -> None:
        """Write one record (fsync'd when ``sync``). Raises OSError when the disk does not take it."""
        self.append_many([record], sync=sync)

    def append_many(self, records: list[Record], *, sync: bool = True) -> None:
        """Copy records into the own file's mapping, fsync'd when ``sync``. Raises OSError if refused."""
        data = _lines(records)
        with self._lock:
            mapped = self._own_map()
            end = self._size + len(data)
            if end > len(mapped):
                mapped = self._move(room=len(data))
                end = self._size + len(data)
            mapped[self._size:end] = data
            self._size = end
            if sync:
                assert self._fd is not None
                os.fsync(self._fd)
            self._pending.extend(records)

    def pending(self) -> int:
        """How many of this process's records wait to be shipped."""
        with self._lock:
            return len(self._pending) if self._pid == os.getpid() else 0

    def ship_own(self, sink: Sink, batch: int = BATCH) -> int:
        """Hand this process's records pending at the call to ``sink``, oldest first, ``batch`` at a time.

        Appends go on while a batch is in the sink; those records wait for the next call (a
        shipper that calls once per interval thus sends what the interval gathered in one go,
        rather than chasing every record that arrived while Redis answered with a batch of its
        own). A sink failure propagates, with that batch and the ones after it still pending.
        The file is emptied whenever nothing is pending.
        """
        shipped = 0
        with self.ship_lock:
            with self._lock:
                due = len(self._pending) if self._pid == os.getpid() else 0
            while shipped < due:
                with self._lock:
                    if self._pid != os.getpid() or not self._pending:
                        return shipped
                    chunk = self._pending[:min(batch, due - shipped)]
                sink(chunk)
                shipped += len(chunk)
                with self._lock:
                    del self._pending[:len(chunk)]
                    if self._map is None:
                        continue
                    if not self._pending and self._size:
                        # Zeroed, so that later records are written over zeros. If a crash undoes
                        # it, a replay finds duplicates only.
                        self._map[:self._size] = bytes(self._size)
                        self._size = 0
                    elif self._size > len(self._map) // 2:  # under load seldom empty: move on here,
                        self._move(room=0)  # so that an append on a check's path seldom has to
        return shipped

    def _move(self, room: int) -> mmap.mmap:
        """Move the pending records to a new own file with ``room`` bytes to spare (called with
        ``_lock`` held, by the shipper when the file is half full, or when a record does not fit)."""
        assert self._fd is not None and self._map is not None and self._path is not None
        data = _lines(self._pending)
        capacity = max(FILE_BYTES, 2 * (len(data) + room))  # a long Redis outage doubles it
        fd, path, mapped = self._new_file(capacity)
        try:
            mapped[:len(data)] = data
            os.fsync(fd)
        except OSError:
            mapped.close()
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        old_fd, old_map, old_path = self._fd, self._map, self._path
        self._fd, self._map, self._path, self._size = fd, mapped, path, len(data)
        old_path.unlink(missing_ok=True)  # killed before this: the old file replays as duplicates
        old_map.close()
        os.close(old_fd)
        return mapped

    def close(self) -> None:
        """Close the own file (removed when empty); pending records stay in it for a replay."""
        with self._lock:
            if self._map is not None:
                self._map.close()  # in a forked child, only the child's view of the parent's file
            if self._fd is not None and self._pid == os.getpid():
                if self._size == 0 and not self._pending and self._path is not None:
                    self._path.unlink(missing_ok=True)
                os.close(self._fd)
            self._fd, self._map, self._path, self._pending, self._size = None, None, None, [], 0

    # -- replaying files of other processes (and of closed spools) ------------------------------
    def files(self) -> list[Path]:
        try:
            found = [p for p in self.directory.iterdir() if p.name.endswith(SUFFIX)]
        except FileNotFoundError:
            return []
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns if p.exists() else 0, p.name))

    def has_records(self) -> bool:
        return any(_holds_records(p) for p in self.files())

    def others_have_records(self) -> bool:
        """Whether a spool file other than this process's own holds records."""
        own = self._path
        return any(_holds_records(p) for p in self.files() if p != own)

    def replay(self, sink: Sink, batch: int = BATCH) -> int:
        """Hand every complete record of every other spool file to ``sink``, in order; return how many.

        Skips this process's own file (see :meth:`ship_own`) and files locked by a live owner
        or another replayer. Stops at the first sink failure (the exception propagates) with
        that file left intact.
        """
        total = 0
        own = self._path
        for path in self.files():
            if path != own:
                total += self._replay_file(path, sink, batch)
        return total

    def _replay_file(self, path: Path, sink: Sink, batch: int) -> int:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its owner is alive, or another process is replaying it: next round
            try:
                data = _read_all(fd).split(b"\0", 1)[0]  # the records end at the first NUL
                records: list[Record] = []
                for line in data.split(b"\n")[:-1]:  # the part after the last newline is torn or empty
                    try:
                        records.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        continue  # cannot be a completed append: those are whole JSON lines
                for start in range(0, len(records), batch):
                    sink(records[start:start + batch])
                os.ftruncate(fd, 0)
                os.fsync(fd)
                if not _owner_alive(path):
                    path.unlink(missing_ok=True)
                return len(records)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _lines(records: list[Record]) -> bytes:
    """The records as the file holds them: one JSON line each."""
    return b"".join([orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in records])


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _holds_records(path: Path) -> bool:
    """Whether the file starts with a record (an own file's unused room is zeros)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return os.pread(fd, 1, 0) not in (b"", b"\0")
    finally:
        os.close(fd)


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
