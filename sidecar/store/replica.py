"""This replica's view of the directory: tenants in memory, kept fresh from the change log.

Tenants are loaded lazily on first use and kept (LRU-bounded). A thread per worker, started
after gunicorn's fork, follows the durable stream ``sidecar:changes`` with blocking XREADs
from the last id it applied: a tenant whose revision is older than an entry is marked stale,
and the request thread that next needs it reloads it, rebuilding the engine while keeping the
cached rights of employees the change did not touch. A replica cut off from Redis keeps
deciding for the tenants it holds and, back online, resumes reading where it stopped; if the
stream was trimmed past that point it marks every tenant stale. Nothing here is lost to a
dropped pub/sub message, because there is none.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis
import structlog

from sidecar.errors import RevisionNotReached, StoreUnavailable
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.engine import EngineCache, TenantEngine
from sidecar.store.connection import connect
from sidecar.store.directory import ALL_EMPLOYEES, CHANGES_STREAM, DirectoryStore
from sidecar.store.health import describe

log = structlog.get_logger("sidecar.replica")
_NEGATIVE_CACHE_LIMIT = 10_000


def parse_revision(revision: str) -> tuple[int, int]:
    ms, _, seq = revision.partition("-")
    return int(ms), int(seq or 0)


class Replica:
    def __init__(self, store: DirectoryStore, bundle: Callable[[], PolicyBundle], redis_url: str,
                 *, max_tenants: int = 20_000) -> None:
        self.store = store
        self._bundle = bundle
        self._redis_url = redis_url
        self._max_tenants = max_tenants
        self._engines: OrderedDict[str, TenantEngine] = OrderedDict()
        self.engine_cache = EngineCache()  # interned rights and live casbin models, shared by this replica's engines
        self._stale: dict[str, set[str]] = {}
        self._stale_upto: dict[str, tuple[int, int]] = {}  # newest change applied to a stale tenant
        self._location_tenant: dict[str, str] = {}
        self._unknown_locations: set[str] = set()
        self._lock = threading.RLock()
        self._caught_up = threading.Condition()
        self.position = "0-0"
        self.connected = False
        self._thread: threading.Thread | None = None
        self._follower: redis.Redis[bytes] | None = None
        self._stop = threading.Event()

    # -- following the change log ------------------------------------------------------------
    def start(self) -> None:
        """Start following the change log from its end (call after the fork, once per worker)."""
        try:
            position = self.store.last_change()
            self.connected = True
        except StoreUnavailable:
            position, self.connected = self.position, False
        self.start_from(position)

    def start_from(self, position: str) -> None:
        """Follow the change log from ``position`` (a restarted follower resumes where it stopped)."""
        if self._thread is not None:
            return
        self.position = position
        self._thread = threading.Thread(target=self._follow, name="sidecar-replica", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.connection_pool.disconnect()  # ends a blocked XREAD now, not at its timeout
        if self._thread is not None:
            self._thread.join(timeout=5)

    def restart(self) -> None:
        """Stop following, then follow again from where the follower was: what it missed is replayed."""
        self.stop()
        self._stop.clear()
        self._thread = None
        self.start_from(self.position)

    def _follow(self) -> None:
        # No redis-py retry: this loop reconnects itself, and with the hiredis parser a retry would
        # reissue the XREAD that stop() interrupted, so every stop waited out a 250 ms block.
        client = self._follower = connect(self._redis_url, timeout_s=5.0, retries=0)
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if not self.connected:
                    self._resume(client)
                reply = client.xread({CHANGES_STREAM: self.position}, count=500, block=250)
                self.connected = True
                backoff = 0.05
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        self.apply_change(entry_id.decode(), fields)
            except Exception as exc:  # the follower must outlive any failure; stop() closes its socket too
                if self._stop.is_set():
                    break
                if self.connected:
                    log.warning("change_log_disconnected", error=describe(exc))
                self.connected = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _resume(self, client: redis.Redis[bytes]) -> None:
        """Back online: if the stream no longer reaches back to our position, reload everything."""
        info = client.xinfo_stream(CHANGES_STREAM) if client.exists(CHANGES_STREAM) else None
        first = info["first-entry"][0].decode() if info and info.get("first-entry") else None
        if first and parse_revision(first) > parse_revision(self.position) and self.position != "0-0":
            log.warning("change_log_gap", position=self.position, first=first)
            self.mark_all_stale()
        log.info("change_log_resumed", position=self.position)

    def apply_change(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Take in one change-log entry: what the follower does with each (callable by hand too)."""
        kind = fields.get(b"kind", b"").decode()
        employees = fields.get(b"employees", b"*").decode()
        revision = parse_revision(entry_id)
        with self._lock:
            if kind == "location":
                subject = fields.get(b"subject", b"").decode()
                self._unknown_locations.discard(subject)
                self._location_tenant.pop(subject, None)
            for tenant in fields.get(b"tenants", b"").decode().split():
                engine = self._engines.get(tenant)
                if engine is not None and parse_revision(engine.directory.revision) < revision:
                    self._stale.setdefault(tenant, set()).add(employees)
                    self._stale_upto[tenant] = max(revision, self._stale_upto.get(tenant, (0, 0)))
            self.position = entry_id  # under the lock: a concurrent miss sees the move (engine_for_location)
        with self._caught_up:
            self._caught_up.notify_all()

    def mark_all_stale(self) -> None:
        """Every tenant reloads on next use (a policy reload, or a gap in the change log)."""
        with self._lock:
            for tenant in self._engines:
                self._stale.setdefault(tenant, set()).add(ALL_EMPLOYEES)
            self._location_tenant.clear()
            self._unknown_locations.clear()

    def wait_for(self, revision: str, timeout_s: float) -> None:
        """Read-your-writes: return once this replica applied ``revision``, else 503."""
        wanted = parse_revision(revision)
        deadline = time.monotonic() + timeout_s
        with self._caught_up:
            while parse_revision(self.position) < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RevisionNotReached(f"this replica has not reached revision {revision} yet",
                                             revision=self.position)
                self._caught_up.wait(left)

    # -- tenants -----------------------------------------------------------------------------
    def engine_for_location(self, location: str) -> TenantEngine | None:
        """The engine of the location's tenant; None when the location does not exist."""
        tenant = self._location_tenant.get(location)
        if tenant is None:
            if location in self._unknown_locations:
                return None
            seen = self.position
            found = self.store.location(location)
            if found is None:
                with self._lock:
                    if len(self._unknown_locations) >= _NEGATIVE_CACHE_LIMIT:
                        self._unknown_locations.clear()
                    if self.position == seen:  # else a creation may have been applied meanwhile
                        self._unknown_locations.add(location)
                return None
            tenant = found.tenant
        engine = self.engine(tenant)
        if location not in engine.directory.locations:
            return self._reload_location(location)
        return engine

    def _reload_location(self, location: str) -> TenantEngine | None:
        """The location moved tenants since we looked: ask Redis once more."""
        with self._lock:
            self._location_tenant.pop(location, None)
        found = self.store.location(location)
        if found is None:
            return None
        engine = self.engine(found.tenant)
        return engine if location in engine.directory.locations else None

    def engine(self, tenant: str) -> TenantEngine:
        engine = self._engines.get(tenant)
        if engine is not None and tenant not in self._stale:
            return engine
        with self._lock:
            engine = self._engines.get(tenant)
            changes = self._stale.pop(tenant, None)
            upto = self._stale_upto.pop(tenant, (0, 0))
            if engine is not None and changes is None:
                return engine
            try:
                directory = self.store.load_tenant(tenant)
            except StoreUnavailable:
                if engine is not None:  # keep deciding with what we hold; retry on next use
                    self._stale[tenant] = changes or {ALL_EMPLOYEES}
                    self._stale_upto[tenant] = upto
                    return engine
                raise
            bundle = self._bundle()
            # Keep other employees' cached rights only if we know every change the loaded
            # directory holds: a later write not yet read from the log may touch anyone.
            known = parse_revision(directory.revision) <= upto
            if engine is not None and changes and ALL_EMPLOYEES not in changes and known:
                fresh = TenantEngine(bundle, directory, reuse=engine, changed_employees=changes,
                                     cache=self.engine_cache)
            else:
                fresh = TenantEngine(bundle, directory, cache=self.engine_cache)
            self._engines[tenant] = fresh
            self._engines.move_to_end(tenant)
            for location in directory.locations:
                self._location_tenant[location] = tenant
            while len(self._engines) > self._max_tenants:
                _, old = self._engines.popitem(last=False)
                for location in old.directory.locations:
                    self._location_tenant.pop(location, None)
            return fresh

    def tenants_loaded(self) -> int:
        return len(self._engines)

    def snapshot(self) -> dict[str, Any]:
        return {"position": self.position, "connected": self.connected, "tenants": len(self._engines)}
