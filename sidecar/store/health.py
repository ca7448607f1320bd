"""Is Redis answering? One worker's view of it: the circuit breaker and the outage log.

A request-path command that *times out* (a Redis that accepts connections but answers nothing:
hung, SIGSTOPped, a black-holed network) opens the circuit: until the background probe
(:class:`RedisWatch`) gets an answer from a primary, every command sent through a guarded
client fails at once with :class:`CircuitOpen` (a redis ``ConnectionError``, which the stores
turn into 503) instead of waiting for its socket timeout. Such a Redis then costs a worker one
timeout per outage, not one per request, and decisions from memory never wait on it.
A refused connection (Redis dead, no primary known to the sentinels yet) costs nothing to
retry, so it does not open the circuit: the next command tries again and the first one that
succeeds ends the outage (a failover is over as soon as a write reaches the new primary).

Either way the first failure of an outage is logged once with its cause (refused, timed out,
a TLS or authentication error, no primary), the end once with the outage's length; nothing is
logged per request. ``/readyz`` reads the same state (:func:`readiness`).

Imports: redis, structlog. (Not ``sidecar.metrics``: the CLI imports this module before
``sidecar serve`` sets up multiprocess metrics; the runtime passes its counter in.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog

log = structlog.get_logger("sidecar.redis")


class CircuitOpen(redis.ConnectionError):
    """Redis is known to be unreachable: the command was not sent."""


def describe(error: BaseException) -> str:
    """A failure's cause in one line (redis-py's messages carry no password)."""
    cause = error.__cause__ or error.__context__
    text = f"{type(error).__name__}: {error}"
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text[:500]


class RedisHealth:
    """Up or down since when, and why. Shared by a worker's guarded clients and its probe."""

    def __init__(self, on_outage: Callable[[], object] | None = None) -> None:
        self._on_outage = on_outage  # called once at the start of each outage (a metric)
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.cause: str | None = None
        self.ever_up = False  # this worker has talked to a primary at least once
        self.circuit_open = False  # a command timed out: send nothing until the probe is answered

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def admit(self) -> None:
        """Raise :class:`CircuitOpen` while the circuit is open (only the probe closes it)."""
        if self.circuit_open:
            raise CircuitOpen(f"Redis does not answer ({self.cause}); the command was not sent")

    def failed(self, error: BaseException) -> None:
        if isinstance(error, CircuitOpen):
            return
        with self._lock:
            if isinstance(error, redis.TimeoutError):
                self.circuit_open = True
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.cause = describe(error)
        if self._on_outage is not None:
            self._on_outage()
        log.warning("redis_unreachable", cause=self.cause, circuit_open=self.circuit_open)

    def answered(self) -> None:
        """A command was answered: the outage (if any) is over."""
        if self.ever_up and self.down_since is None:
            return  # the common case, without the lock
        with self._lock:
            self.ever_up = True
            self.circuit_open = False
            if self.down_since is None:
                return
            outage_s, cause = time.monotonic() - self.down_since, self.cause
            self.down_since, self.cause = None, None
        log.info("redis_reachable", outage_s=round(outage_s, 3), cause=cause)

    def unreachable_for(self) -> float | None:
        down_since = self.down_since
        return None if down_since is None else time.monotonic() - down_since


@dataclass(frozen=True)
class Readiness:
    ready: bool
    status: str  # ready | degraded | unavailable
    reason: str | None
    redis_up: bool
    unreachable_s: float | None
    cause: str | None


def readiness(health: RedisHealth, stale_max_s: float) -> Readiness:
    """What ``/readyz`` says about Redis for one worker (see ``Runtime.ready``)."""
    down_for, cause = health.unreachable_for(), health.cause
    if down_for is None and health.ever_up:
        return Readiness(True, "ready", None, True, None, None)
    if not health.ever_up:
        return Readiness(False, "unavailable", "this worker has not reached Redis since it started (a worker "
                         "started during an outage holds no directory to decide from)", False,
                         None if down_for is None else round(down_for, 3), cause)
    assert down_for is not None
    if down_for < stale_max_s:
        return Readiness(True, "degraded", f"Redis unreachable for {down_for:.1f}s: decisions come from "
                         "memory, writes answer 503 until it is back", False, round(down_for, 3), cause)
    return Readiness(False, "unavailable", f"Redis unreachable for {down_for:.1f}s, more than "
                     f"SIDECAR_STALE_MAX_S={stale_max_s:g}: what this worker holds may be stale", False,
                     round(down_for, 3), cause)


class Guarded:
    """Mixed into a redis-py connection class: consult the breaker, report failures to it."""

    _health: RedisHealth | None

    def __init__(self, *args: Any, health: RedisHealth | None = None, **kwargs: Any) -> None:
        self._health = health
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        if self._health is not None:
            self._health.admit()
        try:
            super().connect()  # type: ignore[misc]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if self._health is not None:
                self._health.failed(exc)
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._health is not None:
            self._health.admit()
        try:
            super().send_packed_command(command, check_health)  # type: ignore[misc]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if self._health is not None:
                self._health.failed(exc)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if self._health is not None:
                self._health.failed(exc)
            raise
        except redis.ResponseError:
            if self._health is not None:
                self._health.answered()  # an error reply is an answer
            raise
        if self._health is not None:
            self._health.answered()
        return response


_GUARDED: dict[type, type] = {}


def guarded(connection_class: type) -> type:
    """``connection_class`` with :class:`Guarded` mixed in (one class per base, made once)."""
    made = _GUARDED.get(connection_class)
    if made is None:
        made = _GUARDED[connection_class] = type(f"Guarded{connection_class.__name__}",
                                                 (Guarded, connection_class), {})
    return made


class RedisWatch:
    """A worker's probe thread: asks ``ROLE`` every ``interval_s``; closes or opens the circuit.

    It is the only thing that closes the circuit, so no request ever pays for finding out
    whether a hung Redis came back. A server that answers as a replica counts as down (after
    a failover the old primary answers reads but refuses writes): its pooled connections are
    dropped so the next one asks the sentinels again.
    """

    def __init__(self, health: RedisHealth, probe: redis.Redis[bytes], *, interval_s: float = 0.5,
                 on_recovery: list[redis.Redis[bytes]] | None = None) -> None:
        self.health = health
        self._probe = probe
        self._interval_s = interval_s
        self._on_recovery = on_recovery or []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sidecar-redis-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._probe.close()

    def probe_once(self) -> bool:
        """One probe: True when a primary answered."""
        try:
            try:
                role = self._probe.execute_command("ROLE")
            except redis.exceptions.NoPermissionError:  # an ACL user without ROLE: an answer is all we learn
                role = [b"master"] if self._probe.ping() else None
            if not role or role[0] not in (b"master", "master"):
                self._probe.connection_pool.disconnect()
                raise redis.ConnectionError("the server answers as a replica, not as the primary")
        except (redis.RedisError, OSError) as exc:
            self.health.failed(exc)
            return False
        was_down = self.health.is_down
        self.health.answered()
        if was_down:
            for client in self._on_recovery:  # sockets to a dead or demoted primary: reconnect
                client.connection_pool.disconnect(inuse_connections=False)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            up = self.probe_once()
            self._stop.wait(self._interval_s if up else self._interval_s / 2)


__all__ = ["CircuitOpen", "Guarded", "Readiness", "RedisHealth", "RedisWatch", "describe", "guarded", "readiness"]
