"""The audit archive's moving parts: the archiver thread, and reading and verifying across both stores.

With ``SIDECAR_AUDIT_DATABASE_URL`` set, events older than ``SIDECAR_AUDIT_HOT_S`` move from the
Redis streams (:mod:`sidecar.store.audit_log`) to PostgreSQL (:mod:`sidecar.store.audit_archive`).

**Moving** (:class:`Archiver`): every process runs the thread; whichever holds the Redis lease
``sc:audit:archiver`` moves, the others only check that PostgreSQL answers (for ``/readyz``). A
batch is the oldest ``batch`` entries of one log older than the cutoff; it is committed in
PostgreSQL (``ON CONFLICT DO NOTHING``), and only then deleted from Redis by a script that checks
the lease and moves the log's ``floor`` to the batch's last hash (``archived_to`` to its position).
A process killed anywhere in between leaves either an uncommitted transaction (rolled back) or
rows in both stores, which the next pass stores once and deletes from Redis. PostgreSQL down:
nothing moves, the thread retries with backoff (1 s doubling to 5 min), events stay in Redis.
A pass works at most ``duty`` of the time (default 5%: after a batch that took t it rests
19 t), so the worker it runs in keeps answering checks at nearly full speed; ``sidecar audit
archive`` runs at full speed.
Retention drops whole month partitions (at most once an hour, under the lease).

**Reading** (:func:`newest_first`): Redis first (the newest events), then, once Redis holds nothing
older, PostgreSQL strictly below the last position seen. A position is a Redis stream id, kept as
the archive's key, so a cursor means the same in both stores and a page may cross the boundary.
An event in both stores (moved, not yet deleted) is shown from Redis only: the archive is read
only below the oldest entry Redis still held.

**Verifying** (:func:`verify`): the archive from its floor up to ``archived_to``, whose last hash
must be the floor Redis starts from, then the Redis stream; counts are compared on both sides.

Imports: the stores, errors, metrics, structlog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from sidecar import metrics
from sidecar.errors import ArchiveUnavailable, StoreUnavailable
from sidecar.store.audit_archive import ArchiveStore, Entry, Filters, parse_sid
from sidecar.store.audit_log import AuditLog, Verdict
from sidecar.store.lease import Lease

LEASE_KEY = "sc:audit:archiver"
_RETENTION_EVERY_S = 3600.0
_MAX_BACKOFF_S = 300.0

log = structlog.get_logger("sidecar.audit.archive")


@dataclass(frozen=True)
class Pass:
    """What one archiving pass did."""

    held_lease: bool
    moved: int = 0
    dropped: tuple[str, ...] = ()


class Archiver:
    """Moves old events from Redis to PostgreSQL; ``start()`` runs it in a thread, ``run_once()`` by hand."""

    def __init__(self, audit_log: AuditLog, archive: ArchiveStore, *, hot_s: int, retention_days: int,
                 batch: int = 1000, every_s: float = 60.0, lease_ms: int = 60_000,
                 max_batches: int = 200, duty: float = 0.05) -> None:
        self.audit_log = audit_log
        self.archive = archive
        self.hot_s = hot_s
        self.retention_days = retention_days
        self.batch = batch
        self.every_s = every_s
        self.lease_ms = lease_ms
        self.max_batches = max_batches  # per pass: a backlog moves over several passes, the lease changes hands
        # The share of time a pass works: after a batch that took t, it rests t * (1 / duty - 1), so
        # moving competes little with the checks of the worker it runs in (1.0: full speed, by hand).
        self.duty = duty
        self.state = "starting"  # ok | unreachable (PostgreSQL did not answer) | starting
        self.error: str | None = None
        self._retention_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="sidecar-audit-archiver", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        self.archive.close()

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                self.archive.ping()
                self._set_state("ok", None)
                done = self.run_once()
                backoff = 0.0
                if done.moved >= self.batch * self.max_batches:
                    continue  # a backlog: go on at once
            except ArchiveUnavailable as exc:
                self._set_state("unreachable", str(exc.__cause__ or exc))
                backoff = min(max(backoff * 2, 1.0), _MAX_BACKOFF_S)
            except StoreUnavailable:
                backoff = min(max(backoff * 2, 1.0), _MAX_BACKOFF_S)
            except Exception as exc:  # the archiver must outlive any one failure
                log.error("audit_archive_failed", error=str(exc), error_type=type(exc).__name__)
                backoff = min(max(backoff * 2, 1.0), _MAX_BACKOFF_S)
            self._stop.wait(backoff or self.every_s)

    def _set_state(self, state: str, error: str | None) -> None:
        if state != self.state:
            (log.warning if state == "unreachable" else log.info)("audit_archive_state", state=state, error=error)
        self.state, self.error = state, error
        metrics.AUDIT_ARCHIVE_UP.set(1 if state == "ok" else 0)

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: the archive's state as this process last saw it (no I/O)."""
        return {"state": self.state, "error": self.error}

    # -- one pass -------------------------------------------------------------------------------
    def run_once(self, *, now_ms: int | None = None, lease_wait_s: float = 0.0) -> Pass:
        """Move every log's events older than the hot period (up to ``max_batches`` batches), then
        apply retention; only while holding the lease. Raises ArchiveUnavailable, StoreUnavailable."""
        lease = Lease(self.audit_log.client, LEASE_KEY, self.lease_ms)
        if not acquire(lease, lease_wait_s):
            return Pass(held_lease=False)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        moved, batches = 0, 0
        try:
            self.archive.ensure_schema()
            built = self.archive.build_indexes()  # an archive made by an earlier version: minutes, once
            if built:
                log.info("audit_archive_indexes_built", indexes=built)
            for log_id in self.audit_log.logs():
                while batches < self.max_batches and not self._stop.is_set():
                    began = time.monotonic()
                    count = self._move_batch(log_id, now_ms - self.hot_s * 1000, lease)
                    batches += 1
                    moved += max(count, 0)
                    if count < self.batch:
                        break
                    if self.duty < 1:
                        rest = (time.monotonic() - began) * (1 / self.duty - 1)
                        self._stop.wait(min(rest, self.lease_ms / 3000))  # renewed well before it expires
                    if not lease.renew():
                        raise StoreUnavailable("the archiver's lease was lost; another process goes on")
            dropped: list[str] = []
            if time.monotonic() >= self._retention_at:
                dropped = self.archive.drop_before(now_ms - self.retention_days * 86_400_000)
                self._retention_at = time.monotonic() + _RETENTION_EVERY_S
                for name in dropped:
                    log.info("audit_archive_partition_dropped", partition=name)
        finally:
            lease.release()
        if moved:
            log.info("audit_archived", events=moved, batches=batches)
        return Pass(held_lease=True, moved=moved, dropped=tuple(dropped))

    def _move_batch(self, log_id: str, below_ms: int, lease: Lease) -> int:
        """Copy one batch to PostgreSQL, commit, then delete it from Redis. How many left Redis."""
        rows = self.audit_log.oldest(log_id, below_ms=below_ms, count=self.batch)
        if not rows:
            return 0
        entries = [Entry(log_id, *parse_sid(sid), body, prev, digest) for sid, body, prev, digest in rows]
        self.archive.insert(entries)  # committed when this returns
        released = self.audit_log.release(log_id, last_sid=entries[-1].sid, last_hash=entries[-1].hash,
                                          lease_key=lease.key, token=lease.token)
        if released == -1:
            raise StoreUnavailable("the archiver's lease was lost; another process goes on")
        if released > 0:
            metrics.AUDIT_ARCHIVED.inc(released)
        return len(rows) if released > 0 else 0
        # -2: the entries were released by someone else meanwhile; this log is done for now


def acquire(lease: Lease, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not lease.acquire():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


# -- reading across both stores ---------------------------------------------------------------------
def newest_first(audit_log: AuditLog, archive: ArchiveStore | None, log_id: str, *, before: str | None,
                 oldest_ms: int | None, filters: Filters, matches: Callable[[dict[str, Any]], bool],
                 scan_budget: int | None, page: int | None = None) -> Iterator[dict[str, Any]]:
    """Matching events newest first from Redis, then from the archive; see the module docstring.

    ``scan_budget`` bounds the Redis entries examined (a final ``{"_sid", "_exhausted": True}``
    marks where it stopped); the archive filters in SQL. ``page``: the first archive read's size.
    Raises ArchiveUnavailable only once archived events are needed.
    """
    last = before
    for scanned, event in enumerate(audit_log.newest_first(log_id, before=before, oldest_ms=oldest_ms), 1):
        last = event["_sid"]
        if matches(event):
            yield event
        if scan_budget is not None and scanned >= scan_budget:
            yield {"_sid": last, "_exhausted": True}
            return
    if archive is None:
        return
    # Read after Redis ran out: a batch released meanwhile has already moved archived_to.
    archived_to = audit_log.meta(log_id).get("archived_to")
    if archived_to is None:
        return
    if oldest_ms is not None and parse_sid(archived_to)[0] < oldest_ms:
        return
    yield from archive.newest_first(log_id, before=last, filters=filters, batch=5000, first_batch=page)


def needs_archive(audit_log: AuditLog, log_id: str) -> bool:
    return "archived_to" in audit_log.meta(log_id)


# -- verifying across both stores -------------------------------------------------------------------
def verify(audit_log: AuditLog, archive: ArchiveStore | None, log_id: str) -> Verdict:
    """The whole chain: the archive from its floor to ``archived_to``, then Redis from there.

    Call it holding the archiver's lease (the CLI does), so nothing moves during the walk.
    """
    meta = audit_log.meta(log_id)
    archived_to = meta.get("archived_to")
    if archived_to is None:
        return audit_log.verify(log_id, meta=meta)
    if archive is None:
        return Verdict(False, 0, "events of this log were archived, but SIDECAR_AUDIT_DATABASE_URL is not set")
    cold, end = archive.verify(log_id, upto=archived_to)
    if not cold.intact:
        return cold
    if end != meta.get("floor"):
        return Verdict(False, cold.count, "the archive's last event is not the one the events in Redis link to "
                       "(archived events at its end were deleted or replaced) [archive]", None, archived_to)
    _, dropped = archive.floor(log_id)
    expected = int(meta.get("archived", 0)) - dropped
    if cold.count != expected:
        return Verdict(False, cold.count, f"the archive holds {cold.count} events of this log up to "
                       f"{archived_to} but {expected} were moved there (and not dropped by retention) [archive]")
    hot = audit_log.verify(log_id, start=end, meta=meta)
    if not hot.intact:
        return Verdict(False, cold.count + hot.count, hot.problem, hot.event_id, hot.stream_id)
    return Verdict(True, cold.count + hot.count)


def verify_still(audit_log: AuditLog, archive: ArchiveStore | None, log_id: str, *,
                 lease_wait_s: float = 120) -> Verdict | None:
    """:func:`verify` holding the archiver's lease, so nothing moves during the walk (None: another
    process kept the lease for ``lease_wait_s``). Without an archive nothing moves: no lease."""
    if archive is None:
        return verify(audit_log, None, log_id)
    lease = Lease(audit_log.client, LEASE_KEY, 600_000)
    if not acquire(lease, lease_wait_s):
        return None
    try:
        return verify(audit_log, archive, log_id)
    finally:
        lease.release()
