"""Critical events: what the Security section shows and ops read as structured logs.

Every event goes to two sinks: one structlog JSON line (``"event": "audit"``) and the durable,
hash-chained log of its chain, or of its standalone location (:mod:`sidecar.store.audit_log`).

Events reported with :func:`emit` (``POST /v1/audit/events``, looks at the Security section) and
directory-write events are acknowledged only once durable: in Redis, or, when Redis does not
answer, fsync'd in this process's spool (:mod:`sidecar.store.spool`). While this process has
such spooled events waiting, its new events queue behind them in the spool; before going to
Redis, an event first ships this process's pending check events, so its events reach the log in
order.

Critical-check events (``runtime.after_check``) do not wait for Redis: they are appended to the
spool file as *journal* records, without fsync (one ``write(2)``: the record is in the kernel's
page cache, so it survives SIGKILL of the worker; a host crash before the kernel writes the page
back, within about 30 s, and before the record reached Redis, normally well under a millisecond
later, loses it), their log line is written at once (``stored_in="journal"``, ``hash`` null),
and the shipper thread is woken. The shipper appends pending records in batches, one
``EVALSHA`` per run of one log's records, then writes one ``audit_shipped`` line per run with
the log's new head hash (the anchor for those events). Its id makes each append idempotent, so
re-shipping after a crash is harmless. A later process replays the files of dead ones.

    emit(runtime, category=..., action=..., outcome=..., employee=..., location=...) -> event id

raises ``Unavailable`` (503) when neither Redis nor the spool took the event. Critical checks
(``runtime.after_check``) and directory writes (``runtime.after_write``) are recorded by the
listeners :func:`init_app` subscribes. Secrets never reach either sink: values under keys that
look like tokens, codes or passwords in caller-supplied dicts are replaced before anything is
written.

Imports: the runtime, the stores, metrics, errors; the Security blueprint only inside init_app.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from flask import Flask, g, has_request_context

from sidecar import metrics
from sidecar.errors import StoreUnavailable, Unavailable
from sidecar.policy.directory import chain_tenant, location_tenant
from sidecar.runtime import CheckRecord, Runtime, WriteRecord
from sidecar.store.audit_log import AuditLog
from sidecar.store.spool import Record, Spool

CATEGORIES = ("login", "export", "edit", "delete", "access", "security")
REDACTED = "[redacted]"
_SECRET_WORDS = ("token", "code", "password", "passwd", "secret", "otp", "authorization", "cookie",
                 "api_key", "apikey", "credential", "private_key")
_TRIM_EVERY_S = 3600.0
_SHIP_EVERY_S = 0.05  # at most one batch per this long: records ship in batches, visible within ~50 ms
_IDLE_S = 10.0  # the shipper looks for orphaned spool files this often, and exits when idle this long
_FIELD_LIMIT = 512

log = structlog.get_logger("sidecar.audit")
_WRITTEN, _SPOOLED, _REPLAYED, _DUPLICATE, _FAILED = (
    metrics.AUDIT_EVENTS.labels(result) for result in ("written", "spooled", "replayed", "duplicate", "failed"))
_auditors: weakref.WeakKeyDictionary[Runtime, Auditor] = weakref.WeakKeyDictionary()
_auditors_lock = threading.Lock()


# -- the public surface -------------------------------------------------------------------------
def emit(runtime: Runtime, *, category: str, action: str, outcome: str, employee: str | None,
         location: str | None = None, chain: str | None = None, object: dict[str, Any] | None = None,
         device: dict[str, Any] | None = None, ip: str | None = None, request_id: str | None = None,
         details: dict[str, Any] | None = None) -> str:
    """Record one event in its chain's log (or its standalone location's); its id once durable."""
    if location is None and chain is None:
        raise ValueError("an audit event needs a location or a chain")
    event = new_event(category=category, action=action, outcome=outcome, employee=employee, location=location,
                      chain=chain, object=object, device=device, ip=ip, request_id=request_id, details=details)
    auditor = auditor_for(runtime)
    auditor.record([(auditor.log_of(location, chain), event)])
    return str(event["id"])


def init_app(app: Flask) -> None:
    """Subscribe to checks and writes, register the Security routes, replay any leftover spool."""
    from sidecar.api import security  # the web layer imports this module; wiring it here avoids a cycle

    runtime: Runtime = app.extensions["sidecar"]
    auditor = auditor_for(runtime)
    app.extensions["audit"] = auditor
    runtime.after_check.append(auditor.after_check)
    runtime.after_write.append(auditor.after_write)
    app.register_blueprint(security.bp)
    auditor.replay_in_background_if_needed()


def _ship_at_exit() -> None:
    """A worker that exits normally ships its pending journal first (best effort)."""
    for auditor in list(_auditors.values()):
        if auditor.spool.pending():
            with contextlib.suppress(StoreUnavailable, OSError):
                auditor.flush()


atexit.register(_ship_at_exit)


def auditor_for(runtime: Runtime) -> Auditor:
    with _auditors_lock:
        auditor = _auditors.get(runtime)
        if auditor is None:
            auditor = _auditors[runtime] = Auditor(runtime)
        return auditor


# -- events as values ----------------------------------------------------------------------------
def now_rfc3339() -> str:
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z"


def new_event(*, category: str, action: str, outcome: str, employee: str | None, location: str | None,
              chain: str | None, object: dict[str, Any] | None, device: dict[str, Any] | None,
              ip: str | None, request_id: str | None, details: dict[str, Any] | None) -> dict[str, Any]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown audit category {category!r}; one of {', '.join(CATEGORIES)}")
    return {"id": uuid.uuid4().hex, "time": now_rfc3339(), "location": location, "chain": chain,
            "employee": employee, "action": action, "category": category, "outcome": outcome,
            "object": scrub(object), "device": scrub(device), "ip": ip, "request_id": request_id,
            "details": scrub(details)}


def scrub(value: Any) -> Any:
    """A copy with every value under a secret-looking key replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {k: REDACTED if _secret(k) else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _secret(key: object) -> bool:
    return _secret_name(str(key))


@functools.lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


@functools.lru_cache(maxsize=4096)
def category_of(action: str) -> str:
    """The category of a right (``resource:action``) or of an upstream service's action name."""
    resource, _, verb = action.lower().partition(":")
    if verb:  # a right, or named like one
        return ("export" if verb == "export" else "delete" if verb == "delete" else "login" if resource == "login"
                else "access" if resource in ("access", "employee", "role", "membership", "chain_membership")
                else "security" if resource in ("security", "security_log", "token", "mfa") else "edit")
    words = set(action.lower().replace(".", " ").replace("_", " ").replace("-", " ").split())
    for category, markers in (("export", {"export"}), ("delete", {"delete"}),
                              ("login", {"login", "logout", "mfa", "password", "device", "session"}),
                              ("security", {"security", "token", "2fa"}),
                              ("access", {"access", "employee", "role", "membership", "activation"})):
        if words & markers:
            return category
    return "edit"


def _short(value: Any) -> str | None:
    return value[:_FIELD_LIMIT] if isinstance(value, str) and value else None


_DEVICE_FIELDS = ("id", "name", "platform", "user_agent")


def _device(value: Any) -> dict[str, Any] | None:
    """A check's ``context.device``: only the contract's fields, as short strings.

    Anything else a caller sends is dropped: a batch of 100 critical checks would otherwise copy
    a large client-supplied value 100 times into Redis and the logs.
    """
    if not isinstance(value, dict):
        return None
    return {k: v[:_FIELD_LIMIT] for k in _DEVICE_FIELDS if isinstance(v := value.get(k), str)}


# -- the writer ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stored:
    sink: str  # redis | spool | journal
    hashes: list[str | None]


class Auditor:
    """One runtime's audit writer: Redis first, the spool when Redis does not answer."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = AuditLog(runtime.redis, runtime.settings.audit_retention_days,
                              min_replicas=runtime.settings.redis_min_replicas,
                              wait_timeout_s=runtime.settings.redis_wait_timeout_s)
        self.spool = Spool(runtime.settings.data_dir / "audit-spool")
        self._lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._spooled = False  # this process has spooled (fsync'd) events not yet known to be shipped
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # journal records wait: ship them now
        self._trimmed: dict[str, float] = {}
        self._thread_pid = 0

    def log_of(self, location: str | None, chain: str | None) -> str | None:
        """The log an event belongs in; None when Redis cannot say now (resolved on replay)."""
        if chain is not None:
            return chain_tenant(chain)
        assert location is not None
        try:
            found = self.runtime.directory.location(location)
        except StoreUnavailable:
            return None
        return found.tenant if found is not None else location_tenant(location)

    def record(self, items: list[tuple[str | None, dict[str, Any]]]) -> Stored:
        """Make the events durable, then write their log lines. Raises Unavailable if nothing took them."""
        for log_id, event in items:
            if log_id is not None and log_id.startswith("c:"):
                event["chain"] = log_id[2:]
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
                _WRITTEN.inc(len(items))
                self._maybe_trim({log_id for log_id, _ in resolved})
                return Stored("redis", [a.hash for a in appended])
        try:
            with self._lock:
                self.spool.append_many([{"log": log_id, "event": event} for log_id, event in items])
                self._spooled = True
        except OSError as exc:
            _FAILED.inc(len(items))
            log.error("audit_not_recorded", ids=[e["id"] for _, e in items], error=str(exc))
            raise Unavailable("the audit log is unavailable (Redis and the local spool refused the event)") from exc
        _SPOOLED.inc(len(items))
        self._ensure_replayer()
        return Stored("spool", [None] * len(items))

    def journal(self, items: list[tuple[str, dict[str, Any]]]) -> Stored:
        """Critical-check events: into the spool file without fsync, log lines, wake the shipper.

        Falls back to :meth:`record` (Redis, else the fsync'd spool, else 503) when the spool
        file refuses them.
        """
        for log_id, event in items:
            if log_id.startswith("c:"):
                event["chain"] = log_id[2:]
        try:
            self.spool.append_many([{"log": log_id, "event": event, "j": 1} for log_id, event in items], sync=False)
        except OSError as exc:
            log.warning("audit_journal_failed", error=str(exc))
            return self.record(list(items))
        _WRITTEN.inc(len(items))  # counted once journaled, so the counter moves with the checks
        for log_id, event in items:
            log.info("audit", **event, log=log_id, stored_in="journal", hash=None)
        self._ensure_replayer()
        self._wake.set()
        return Stored("journal", [None] * len(items))

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

    # -- listeners -----------------------------------------------------------------------------
    def after_check(self, record: CheckRecord) -> None:
        catalogue = self.runtime.bundle.catalogue.rights
        critical = [(d, did) for d, did in record.decisions
                    if (right := catalogue.get(d.right)) is not None and right.critical]
        if not critical:
            return
        engine = self.runtime.replica.engine_for_location(record.location)  # the one the decision used
        log_id = engine.directory.tenant if engine is not None else None
        chain = engine.directory.chain.id if engine is not None and engine.directory.chain else None
        context = record.context
        device = _device(context.get("device"))
        ip = _short(context.get("ip"))
        request_id = _short(context.get("request_id")) or record.request_id
        mfa = bool(context.get("mfa", False))
        at = now_rfc3339()
        # Built here rather than by new_event: every field but device is the sidecar's own, so
        # only device (the caller's) needs scrubbing, and category_of always names a category.
        events = [{"id": uuid.uuid4().hex, "time": at, "location": record.location, "chain": chain,
                   "employee": record.employee, "action": d.right, "category": category_of(d.right),
                   "outcome": "allowed" if d.allowed else "denied", "object": None,
                   "device": device, "ip": ip, "request_id": request_id,
                   "details": {"decision_id": decision_id, "reason": d.reason, "source": record.source,
                               "mfa": mfa}}
                  for d, decision_id in critical]
        if log_id is None:  # an unknown location has no Security section: the log line only
            for event in events:
                log.info("audit", **event, log=None, stored_in="none", hash=None)
            return
        self.journal([(log_id, event) for event in events])

    def after_write(self, record: WriteRecord) -> None:
        verb = "create" if record.before is None else "delete" if record.after is None else "update"
        details = {"before": record.before, "after": record.after, "revision": record.revision,
                   "subject": record.subject, "service": g.get("token_name") if has_request_context() else None}
        items: list[tuple[str | None, dict[str, Any]]] = []
        for tenant in record.tenants:
            if not tenant.startswith(("c:", "l:")):
                continue
            location = record.subject.get("location") or (tenant[2:] if tenant.startswith("l:") else None)
            items.append((tenant, new_event(
                category="access", action=f"{record.kind}:{verb}", outcome="success", employee=record.actor,
                location=location, chain=tenant[2:] if tenant.startswith("c:") else None,
                object={"type": record.kind, "id": "/".join(record.subject.values())}, device=None, ip=None,
                request_id=record.request_id, details=details)))
        if items:
            self.record(items)
        else:  # e.g. an employee who is a member nowhere: no Security section shows it
            event = new_event(category="access", action=f"{record.kind}:{verb}", outcome="success",
                              employee=record.actor, location=None, chain=None,
                              object={"type": record.kind, "id": "/".join(record.subject.values())},
                              device=None, ip=None, request_id=record.request_id, details=details)
            log.info("audit", **event, log=None, stored_in="none", hash=None)

    # -- shipping and replay ---------------------------------------------------------------------
    def replay_now(self) -> int:
        """Ship every spool record this process can: other processes' orphaned files (oldest
        first), then its own pending records. Raises StoreUnavailable."""
        with self._replay_lock:
            count = self.spool.replay(self._ship)
        return count + self._ship_own()

    def flush(self) -> int:
        """Ship this process's pending records now (e.g. its journal). Raises StoreUnavailable."""
        return self._ship_own()

    def _ship_own(self) -> int:
        count = self.spool.ship_own(self._ship)
        if self._spooled:
            with self._lock:
                if self._spooled and not self.spool.pending():
                    self._spooled = False
        return count

    def _ship(self, records: list[Record]) -> None:
        """Append consecutive spool records to their logs: one EVALSHA per run of one log."""
        items: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            event: dict[str, Any] = record["event"]
            log_id = record.get("log") or self.log_of(event.get("location"), event.get("chain"))
            if log_id is None:
                raise StoreUnavailable("the directory store (Redis) is unreachable")
            if log_id.startswith("c:"):
                event["chain"] = log_id[2:]
            items.append((log_id, event))
        appended = self.store.append_many(items)
        duplicate = 0
        run_start = 0
        for i, ((log_id, event), record, result) in enumerate(zip(items, records, appended, strict=True)):
            if not result.added:
                duplicate += 1
            elif record.get("j"):
                pass  # a journal record: counted (written) and logged when it was journaled
            else:
                _REPLAYED.inc()
                log.info("audit_replayed", id=event["id"], log=log_id, hash=result.hash)
            if i + 1 == len(items) or items[i + 1][0] != log_id:  # the end of a run of one log
                run = appended[run_start:i + 1]
                head = next((a.hash for a in reversed(run) if a.added), None)
                if head is not None:
                    log.info("audit_shipped", log=log_id, count=sum(a.added for a in run),
                             last_id=event["id"], hash=head)
                run_start = i + 1
        if duplicate:
            _DUPLICATE.inc(duplicate)
        self._maybe_trim({log_id for log_id, _ in items})

    def replay_in_background_if_needed(self) -> None:
        if self.spool.has_records():
            self._ensure_replayer()

    def _ensure_replayer(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread_pid == os.getpid() and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._replay_loop, name="sidecar-audit-replay", daemon=True)
            self._thread_pid = os.getpid()
            self._thread.start()

    def _replay_loop(self) -> None:
        """Ship this process's records as soon as woken; replay orphaned files every _IDLE_S."""
        backoff = 0.0
        scan_at = 0.0
        shipped_at = 0.0
        while not self._stop.is_set():
            gap = shipped_at + _SHIP_EVERY_S - time.monotonic()
            if gap > 0 and self._stop.wait(gap):  # the records that arrive meanwhile join the batch
                break
            shipped_at = time.monotonic()
            self._wake.clear()
            try:
                if time.monotonic() >= scan_at:
                    with self._replay_lock:
                        self.spool.replay(self._ship)
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

    def stop(self) -> None:
        """Stop the shipper, ship what is pending if Redis answers, close the spool file.

        Records Redis did not take stay in the file, for a later replay.
        """
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        with self._lock:
            self._thread = None
        with contextlib.suppress(StoreUnavailable, OSError):
            self._ship_own()
        self.spool.close()

    # -- reading (the Security section) ---------------------------------------------------------
    def events(self, log_id: str, query: Query, *, scan_budget: int | None) -> Iterator[dict[str, Any]]:
        """Matching events newest first; stops after ``scan_budget`` entries examined (if given).

        Each yielded event still carries ``_sid``; a final ``{"_sid": ..., "_exhausted": True}``
        marks where an exhausted budget stopped the scan.
        """
        oldest_ms = max(0, query.since_ms - SKEW_MARGIN_MS) if query.since_ms is not None else None
        for scanned, event in enumerate(self.store.newest_first(log_id, before=query.cursor, oldest_ms=oldest_ms), 1):
            if query.matches(event):
                yield event
            if scan_budget is not None and scanned >= scan_budget:
                yield {"_sid": event["_sid"], "_exhausted": True}
                return


# Stream ids are Redis's clock at append; an event's time is its replica's clock at emit. A
# ``since`` filter stops scanning this far below ``since`` so clock skew cannot hide an event.
SKEW_MARGIN_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class Query:
    category: str | None = None
    employee: str | None = None
    action: str | None = None
    location: str | None = None
    since: str | None = None  # normalised RFC 3339 UTC, the events' own format
    until: str | None = None
    since_ms: int | None = None
    cursor: str | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        return ((self.category is None or event.get("category") == self.category)
                and (self.employee is None or event.get("employee") == self.employee)
                and (self.action is None or event.get("action") == self.action)
                and (self.location is None or event.get("location") == self.location)
                and (self.since is None or event.get("time", "") >= self.since)
                and (self.until is None or event.get("time", "") <= self.until))


# -- the `sidecar audit verify` command ----------------------------------------------------------------
def verify_command(settings: Any, *, chain: str | None, location: str | None) -> int:
    """Verify one log's hash chain; print the count (exit 0) or the first bad event (exit 1)."""
    from sidecar.policy.directory import check_id
    from sidecar.store.connection import (
        connect,
        resolve_redis,  # the CLI's way to Redis (starts the embedded one if needed)
    )
    from sidecar.store.directory import loc_key

    url, _ = resolve_redis(settings)
    client = connect(url, timeout_s=30)
    try:
        if chain is not None:
            log_id = chain_tenant(check_id(chain, "chain"))
        else:
            check_id(location, "location")
            raw = client.get(loc_key(str(location)))
            owner = orjson.loads(raw).get("chain") if raw else None
            log_id = chain_tenant(owner) if owner else location_tenant(str(location))
            if owner:
                print(f"location {location} is in chain {owner}: verifying the chain's log")
        verdict = AuditLog(client, settings.audit_retention_days).verify(log_id)
    finally:
        client.close()
    if verdict.intact:
        print(f"{log_id}: intact, {verdict.count} events")
        return 0
    print(f"{log_id}: BROKEN after {verdict.count} good events: event {verdict.event_id} "
          f"(log position {verdict.stream_id}): {verdict.problem}")
    return 1
