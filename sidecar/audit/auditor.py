"""The durable audit writer: Redis first, the spool when Redis does not answer; its shipper thread.

The states an event goes through are listed in :mod:`sidecar.audit`. :class:`Auditor` owns the
spool and the one shipper thread: ``start()`` lets it run (and replays spool files that dead
processes left), ``stop()`` stops it, ships what is pending if Redis answers, and closes the
spool file. Before ``start()`` (a one-shot CLI run) nothing ships in the background: pending
records go with the next recorded event, ``flush()`` or ``stop()``.

Imports: :mod:`sidecar.audit.events`, the stores, policy, errors and metrics.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import structlog

from sidecar import logs, metrics
from sidecar.audit.events import new_event
from sidecar.errors import StoreUnavailable, Unavailable
from sidecar.policy.tenant import Tenant
from sidecar.store.audit_log import AuditLog
from sidecar.store.directory import DirectoryStore
from sidecar.store.spool import Record, Spool

_TRIM_EVERY_S = 3600.0
_IDLE_S = 10.0  # the shipper looks for orphaned spool files this often, and exits when idle this long

log = structlog.get_logger("sidecar.audit")


def _count(result: str, amount: int = 1) -> None:
    """Count events by result (the child is made at the first count, not at import: children must be
    made in the worker, after ``sidecar serve`` chose multiprocess metrics)."""
    metrics.labelled(metrics.AUDIT_EVENTS, result).inc(amount)


@dataclass(frozen=True)
class Stored:
    sink: str  # redis | spool | journal
    hashes: list[str | None]


class Auditor:
    """The audit writer of one runtime: Redis first, the spool when Redis does not answer."""

    def __init__(self, store: AuditLog, spool: Spool, directory: DirectoryStore, *, ship_every_s: float) -> None:
        """``ship_every_s``: under load, at most one batch per this long (records that arrive in
        between join it; an idle shipper ships a new record at once)."""
        self.store = store
        self.ship_every_s = ship_every_s
        self.spool = spool
        self.directory = directory
        self._lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._spooled = False  # this process has spooled (fsync'd) events not yet known to be shipped
        self._started = False  # the shipper may run (between start() and stop())
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # journal records wait: ship them now
        self._unlogged: deque[tuple[str, list[dict[str, Any]]]] = deque()  # journaled; log lines not yet written
        self._trimmed: dict[str, float] = {}
        self._thread_pid = 0

    def start(self) -> None:
        """Let the shipper run; it starts now if spool files (this or dead processes') wait."""
        with self._lock:
            self._started = True
            self._stop.clear()
        if self.spool.has_records():
            self._ensure_replayer()

    def stop(self) -> None:
        """Stop the shipper, ship what is pending if Redis answers, close the spool file.

        Records Redis did not take stay in the file, for a later replay. Idempotent.
        """
        with self._lock:
            self._started = False
            self._stop.set()
            self._wake.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        with self._lock:
            self._thread = None
        with contextlib.suppress(StoreUnavailable, OSError):
            self._ship_own(drain=True)
        self.spool.close()

    def emit(self, *, category: str, action: str, outcome: str, employee: str | None,
             location: str | None = None, chain: str | None = None, object: dict[str, Any] | None = None,
             device: dict[str, Any] | None = None, ip: str | None = None, request_id: str | None = None,
             details: dict[str, Any] | None = None, employee_name: str | None = None) -> str:
        """Record one event in its chain's log (or its standalone location's); its id once durable.

        ``employee_name``: the employee's display name; looked up now (:meth:`name_of`) when not
        given, so the event keeps the name as it was at the time. Raises ``Unavailable`` (503)
        when neither Redis nor the spool took the event.
        """
        if location is None and chain is None:
            raise ValueError("an audit event needs a location or a chain")
        if employee_name is None:
            employee_name = self.name_of(employee)
        event = new_event(category=category, action=action, outcome=outcome, employee=employee, location=location,
                          chain=chain, object=object, device=device, ip=ip, request_id=request_id, details=details,
                          employee_name=employee_name)
        self.record([(self.log_of(location, chain), event)])
        return str(event["id"])

    def name_of(self, employee: str | None) -> str | None:
        """The employee's display name now (one read of the employee record).

        None for no employee, no name, an unknown employee, or Redis away: a name is never a
        reason to fail or delay an event.
        """
        if employee is None:
            return None
        try:
            person = self.directory.employee(employee)
        except StoreUnavailable:
            return None
        return person.name if person is not None else None

    def log_of(self, location: str | None, chain: str | None) -> str | None:
        """The log an event belongs in; None when Redis cannot say now (resolved on replay)."""
        if chain is not None:
            return Tenant.chain(chain)
        assert location is not None
        try:
            found = self.directory.location(location)
        except StoreUnavailable:
            return None
        return found.tenant if found is not None else Tenant.location(location)

    def record(self, items: list[tuple[str | None, dict[str, Any]]]) -> Stored:
        """Make the events durable, then write their log lines. Raises Unavailable if nothing took them."""
        for log_id, event in items:
            if log_id is not None and log_id.startswith("c:"):  # not every log is a tenant's (token changes)
                event["chain"] = Tenant.parse(log_id).id
        stored = self._durable(items)
        for (log_id, event), digest in zip(items, stored.hashes, strict=True):
            log.info("audit", **event, log=log_id, stored_in=stored.sink, hash=digest)
        return stored

    def _durable(self, items: list[tuple[str | None, dict[str, Any]]]) -> Stored:
        resolved = [(log_id, event) for log_id, event in items if log_id is not None]
        if not self._spooled and len(resolved) == len(items):
            try:
                with self.spool.ship_lock:  # this process's pending check events go first
                    self._ship_own()
                    appended = self.store.append_many(resolved)
            except StoreUnavailable:
                pass
            else:
                _count("written", len(items))
                self._maybe_trim({log_id for log_id, _ in resolved})
                return Stored("redis", [a.hash for a in appended])
        try:
            with self._lock:
                self.spool.append_many([{"log": log_id, "event": event} for log_id, event in items])
                self._spooled = True
        except OSError as exc:
            _count("failed", len(items))
            log.error("audit_not_recorded", ids=[e["id"] for _, e in items], error=str(exc))
            raise Unavailable("the audit log is unavailable (Redis and the local spool refused the event)") from exc
        _count("spooled", len(items))
        self._ensure_replayer()
        return Stored("spool", [None] * len(items))

    def journal(self, log_id: str, events: list[dict[str, Any]]) -> Stored:
        """Critical-check events of one log: into the spool file without fsync, then wake the shipper.

        Each event already names the log's chain (``chain``), as :meth:`record` would set it. The
        spool copies them into its mapped file and the shipper writes their log lines, a batch at
        a time, before it ships them: a check pays no system call for its events. Falls back to
        :meth:`record` (Redis, else the fsync'd spool, else 503) when the spool refuses them.
        """
        try:
            self.spool.append_many([{"log": log_id, "event": event, "j": 1} for event in events], sync=False)
        except OSError as exc:
            log.warning("audit_journal_failed", error=str(exc))
            return self.record([(log_id, event) for event in events])
        _count("written", len(events))  # counted once journaled, so the counter moves with the checks
        self._unlogged.append((log_id, events))
        self._ensure_replayer()
        if not self._wake.is_set():  # one wake per batch is enough: the shipper takes all pending
            self._wake.set()
        return Stored("journal", [None] * len(events))

    def _maybe_trim(self, logs: set[str]) -> None:
        now = time.monotonic()
        for log_id in logs:
            if now - self._trimmed.get(log_id, -_TRIM_EVERY_S) >= _TRIM_EVERY_S:
                if len(self._trimmed) > 100_000:
                    self._trimmed.clear()
                self._trimmed[log_id] = now
                try:
                    self.store.trim(log_id, int(time.time() * 1000))
                except StoreUnavailable:
                    return

    # -- shipping and replay --------------------------------------------------------------------
    def replay_now(self) -> int:
        """Ship every spool record this process can: other processes' orphaned files (oldest
        first), then its own pending records. Raises StoreUnavailable."""
        with self._replay_lock:
            count = self.spool.replay(self._ship_orphans)
        return count + self._ship_own()

    def flush(self) -> int:
        """Ship this process's pending records now, until none is left (e.g. its journal).
        Raises StoreUnavailable."""
        return self._ship_own(drain=True)

    def _log_journaled(self) -> None:
        """Write the log lines of the events journaled since the last call, together."""
        if not self._unlogged:
            return
        with logs.written_together() as lines:
            while self._unlogged:
                try:
                    log_id, events = self._unlogged.popleft()
                except IndexError:  # another thread wrote the last ones
                    break
                for event in events:
                    lines.info("audit", **event, log=log_id, stored_in="journal", hash=None)

    def _ship_own(self, *, drain: bool = False) -> int:
        """Write the journaled events' log lines, then ship the records pending now (the shipper's
        batch: later ones wait for its next round), or until none is left when ``drain`` or while
        spooled events wait (they clear the way for this process's next events to go to Redis
        directly)."""
        self._log_journaled()  # before shipping: a line never waits for Redis
        count = self.spool.ship_own(self._ship)
        while (drain or self._spooled) and self.spool.pending():
            shipped = self.spool.ship_own(self._ship)
            if not shipped:
                break
            count += shipped
        if self._spooled:
            with self._lock:
                if self._spooled and not self.spool.pending():
                    self._spooled = False
        return count

    def _ship_orphans(self, records: list[Record]) -> None:
        self._ship(records, orphaned=True)

    def _ship(self, records: list[Record], *, orphaned: bool = False) -> None:
        """Append consecutive spool records to their logs: one EVALSHA per run of one log.

        ``orphaned``: records of a dead process's spool file. Its journal records' log lines may
        not have been written (it died within a shipping interval of the check), so they are
        written now, with ``replayed``: after a crash a line may appear twice, never not at all.
        """
        items: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            event: dict[str, Any] = record["event"]
            log_id = record.get("log") or self.log_of(event.get("location"), event.get("chain"))
            if log_id is None:
                raise StoreUnavailable("the directory store (Redis) is unreachable")
            if event.get("chain") is None and log_id.startswith("c:"):  # not every log is a tenant's
                event["chain"] = Tenant.parse(log_id).id
            items.append((log_id, event))
        appended = self.store.append_many(items)
        duplicate = 0
        run_start = 0
        for i, ((log_id, event), record, result) in enumerate(zip(items, records, appended, strict=True)):
            if not result.added:
                duplicate += 1
            elif record.get("j"):  # a journal record: counted (written) when it was journaled
                if orphaned:
                    log.info("audit", **event, log=log_id, stored_in="redis", hash=result.hash, replayed=True)
            else:
                _count("replayed")
                log.info("audit_replayed", id=event["id"], log=log_id, hash=result.hash)
            if i + 1 == len(items) or items[i + 1][0] != log_id:  # the end of a run of one log
                run = appended[run_start:i + 1]
                head = next((a.hash for a in reversed(run) if a.added), None)
                if head is not None:
                    log.info("audit_shipped", log=log_id, count=sum(a.added for a in run),
                             last_id=event["id"], hash=head)
                run_start = i + 1
        if duplicate:
            _count("duplicate", duplicate)
        self._maybe_trim({log_id for log_id, _ in items})

    def _shipper_running(self) -> bool:
        thread = self._thread
        return thread is not None and self._thread_pid == os.getpid() and thread.is_alive()

    def _ensure_replayer(self) -> None:
        if self._shipper_running():  # the common case, on a critical check's path: no lock
            return
        with self._lock:
            if not self._started or self._shipper_running():
                return
            self._thread = threading.Thread(target=self._replay_loop, name="sidecar-audit-replay", daemon=True)
            self._thread_pid = os.getpid()
            self._thread.start()

    def _replay_loop(self) -> None:
        """Ship this process's records as soon as woken; replay orphaned files every _IDLE_S."""
        backoff = 0.0
        scan_at = 0.0
        shipped_at = 0.0
        while not self._stop.is_set():
            gap = shipped_at + self.ship_every_s - time.monotonic()
            if gap > 0 and self._stop.wait(gap):  # the records that arrive meanwhile join the batch
                break
            shipped_at = time.monotonic()
            self._wake.clear()
            try:
                if time.monotonic() >= scan_at:
                    with self._replay_lock:
                        self.spool.replay(self._ship_orphans)
                    scan_at = time.monotonic() + _IDLE_S
                self._ship_own()
                backoff = 0.0
            except StoreUnavailable:
                backoff = min(max(backoff * 2, 0.1), 5.0)
            except Exception as exc:  # the shipper must outlive any one failure
                log.error("audit_replay_failed", error=str(exc), error_type=type(exc).__name__)
                backoff = min(max(backoff * 2, 0.1), 5.0)
            if backoff:
                self._stop.wait(backoff)
                continue
            if self._wake.wait(_IDLE_S):
                continue
            with self._lock:  # idle: exit unless something waits (a new record starts a new thread)
                if not self.spool.pending() and not self.spool.others_have_records() and not self._wake.is_set():
                    self._thread = None
                    return
