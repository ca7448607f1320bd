"""Webhook subscriptions and their durable delivery queue in Redis.

Layout (``T`` is an audit log: ``c:<chain>`` or ``l:<standalone location>``; ``N`` a subscription)::

    sc:wh:tenants            SET    logs with at least one subscription
    sc:wh:<T>                HASH   N -> JSON {name, url, categories, actions, secret, created_at}
    sc:wh:<T>:cursor         STRING the id of the last audit-stream entry fanned out
    sc:wh:due                ZSET   delivery id -> when its next attempt is due (ms); a claimed
                                    delivery is pushed a lease ahead, so a worker that dies
                                    mid-attempt leaves it to be tried again
    sc:wh:d:<id>             HASH   tenant, name, event (JSON), event_id, action, state
                                    (pending | delivered | dead | cancelled), attempts,
                                    last_status, last_error, next_at, created_at, updated_at
    sc:wh:<T>:<N>:pending    SET    delivery ids still to deliver
    sc:wh:<T>:<N>:recent     LIST   the last 100 finished delivery ids, newest first
    sc:wh:<T>:<N>:dead       LIST   dead letters (delivery ids), newest first, at most 1000

A delivery id is ``<T>/<N>/<event id>``: fanning an event out twice gives the same id. The
fan-out reads the audit stream after the cursor and, in one ``MULTI`` under ``WATCH`` of the
cursor, enqueues the matching deliveries and moves the cursor: of several workers fanning out
at once exactly one commits, so each event is enqueued once. Finished deliveries keep their
record for ``FINISHED_TTL_S`` (pending ones until they finish).

Imports: redis, orjson, ``sidecar.store.connection``, ``sidecar.store.audit_log`` (stream keys).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from sidecar.store.audit_log import stream_key
from sidecar.store.connection import translated_errors

TENANTS_KEY = "sc:wh:tenants"
DUE_KEY = "sc:wh:due"
FINISHED_TTL_S = 7 * 86400
RECENT_KEPT, DEAD_KEPT = 100, 1000
FAN_OUT_BATCH = 500

# Claim up to ARGV[2] deliveries due by ARGV[1] (ms): push each ARGV[3] (ms) ahead, a lease.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), id) end
return ids
"""


def subs_key(tenant: str) -> str:
    return f"sc:wh:{tenant}"


def cursor_key(tenant: str) -> str:
    return f"sc:wh:{tenant}:cursor"


def delivery_key(delivery_id: str) -> str:
    return f"sc:wh:d:{delivery_id}"


def list_key(tenant: str, name: str, kind: str) -> str:
    return f"sc:wh:{tenant}:{name}:{kind}"


@dataclass(frozen=True)
class Subscription:
    name: str
    url: str
    categories: tuple[str, ...]
    actions: tuple[str, ...]
    secret: str
    created_at: str

    def wants(self, event: dict[str, Any]) -> bool:
        """An event is sent when its category or its action is listed."""
        return event.get("category") in self.categories or event.get("action") in self.actions

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "categories": list(self.categories),
                "actions": list(self.actions), "secret": self.secret, "created_at": self.created_at}

    @classmethod
    def from_json(cls, raw: bytes) -> Subscription:
        data = orjson.loads(raw)
        return cls(data["name"], data["url"], tuple(data["categories"]), tuple(data["actions"]), data["secret"],
                   data["created_at"])


@dataclass(frozen=True)
class Delivery:
    id: str
    tenant: str
    name: str
    body: bytes  # the event as sent: the exact bytes that are signed
    attempts: int


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


class WebhookStore:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.client = client
        self._claim = client.register_script(_CLAIM)

    # -- subscriptions ----------------------------------------------------------------------
    def put(self, tenant: str, subscription: Subscription) -> bool:
        """Store (or replace) a subscription; True if it is new. New logs start at the stream's end."""
        with translated_errors():
            last = self.client.xrevrange(stream_key(tenant), count=1)
            start = last[0][0].decode() if last else "0-0"
            with self.client.pipeline() as pipe:
                pipe.hset(subs_key(tenant), subscription.name, orjson.dumps(subscription.to_json()))
                pipe.set(cursor_key(tenant), start, nx=True)  # only events from now on are sent
                pipe.sadd(TENANTS_KEY, tenant)
                created, _, _ = pipe.execute()
        return bool(created)

    def get(self, tenant: str, name: str) -> Subscription | None:
        with translated_errors():
            raw = self.client.hget(subs_key(tenant), name)
        return None if raw is None else Subscription.from_json(raw)

    def all(self, tenant: str) -> list[Subscription]:
        with translated_errors():
            raw = self.client.hgetall(subs_key(tenant))
        return sorted((Subscription.from_json(v) for v in raw.values()), key=lambda s: s.name)

    def delete(self, tenant: str, name: str) -> bool:
        """Remove a subscription; its pending deliveries are cancelled when they come due."""
        with translated_errors():
            removed = bool(self.client.hdel(subs_key(tenant), name))
            if removed and not self.client.hlen(subs_key(tenant)):
                with self.client.pipeline() as pipe:
                    pipe.srem(TENANTS_KEY, tenant)
                    pipe.delete(cursor_key(tenant))  # a later subscription starts from its own moment
                    pipe.execute()
        return removed

    # -- fan-out ------------------------------------------------------------------------------
    def fan_out(self, now_ms: int) -> int:
        """Enqueue a delivery per new audit event and interested subscription; the count enqueued."""
        with translated_errors():
            tenants = sorted(t.decode() for t in self.client.smembers(TENANTS_KEY))
            if not tenants:
                return 0
            with self.client.pipeline(transaction=False) as pipe:
                for tenant in tenants:
                    pipe.get(cursor_key(tenant))
                cursors = pipe.execute()
            with self.client.pipeline(transaction=False) as pipe:
                for tenant, cursor in zip(tenants, cursors, strict=True):
                    pipe.xrange(stream_key(tenant), min=f"({(cursor or b'0-0').decode()}", count=1)
                fresh = pipe.execute()
            return sum(self._fan_out_log(tenant, now_ms) for tenant, new in zip(tenants, fresh, strict=True) if new)

    def _fan_out_log(self, tenant: str, now_ms: int) -> int:
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(cursor_key(tenant))
                watched: Any = pipe  # after WATCH, commands run at once and answer values
                raw_cursor = watched.get(cursor_key(tenant))
                if raw_cursor is None:  # unsubscribed meanwhile
                    return 0
                entries = watched.xrange(stream_key(tenant), min=f"({raw_cursor.decode()}", count=FAN_OUT_BATCH)
                subscriptions = [Subscription.from_json(v) for v in watched.hgetall(subs_key(tenant)).values()]
                if not entries:
                    return 0
                pipe.multi()
                count = 0
                for _, fields in entries:
                    body = fields[b"e"]
                    event = orjson.loads(body)
                    for sub in subscriptions:
                        if not sub.wants(event):
                            continue
                        delivery_id = f"{tenant}/{sub.name}/{event['id']}"
                        pipe.hset(delivery_key(delivery_id), mapping={
                            "tenant": tenant, "name": sub.name, "event": body, "event_id": event["id"],
                            "action": event.get("action") or "", "state": "pending", "attempts": 0,
                            "next_at": now_ms, "created_at": now_ms, "updated_at": now_ms})
                        pipe.zadd(DUE_KEY, {delivery_id: now_ms}, nx=True)
                        pipe.sadd(list_key(tenant, sub.name, "pending"), delivery_id)
                        count += 1
                pipe.set(cursor_key(tenant), entries[-1][0])
                pipe.execute()
                return count
            except redis.WatchError:
                return 0  # another worker fanned this log out; the next round sees its cursor

    # -- deliveries ---------------------------------------------------------------------------
    def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[Delivery]:
        with translated_errors():
            ids = [i.decode() for i in self._claim(keys=[DUE_KEY], args=[now_ms, limit, lease_ms])]
            if not ids:
                return []
            with self.client.pipeline(transaction=False) as pipe:
                for delivery_id in ids:
                    pipe.hmget(delivery_key(delivery_id), "tenant", "name", "event", "attempts", "state")
                rows = pipe.execute()
        claimed = []
        for delivery_id, (tenant, name, body, attempts, state) in zip(ids, rows, strict=True):
            if tenant is None or body is None or state != b"pending":
                with translated_errors():
                    self.client.zrem(DUE_KEY, delivery_id)  # a record gone or finished: nothing to send
                continue
            claimed.append(Delivery(delivery_id, tenant.decode(), name.decode(), body, int(attempts or 0)))
        return claimed

    def finish(self, delivery: Delivery, state: str, *, status: int | None, error: str | None, now_ms: int) -> None:
        """A delivery is over: ``delivered``, ``dead`` (kept as a dead letter) or ``cancelled``."""
        key = delivery_key(delivery.id)
        with translated_errors(), self.client.pipeline() as pipe:
            pipe.hset(key, mapping={"state": state, "attempts": delivery.attempts + (state != "cancelled"),
                                    "last_status": "" if status is None else status, "last_error": error or "",
                                    "updated_at": now_ms, "next_at": ""})
            pipe.expire(key, FINISHED_TTL_S)
            pipe.zrem(DUE_KEY, delivery.id)
            pipe.srem(list_key(delivery.tenant, delivery.name, "pending"), delivery.id)
            recent = list_key(delivery.tenant, delivery.name, "recent")
            pipe.lpush(recent, delivery.id)
            pipe.ltrim(recent, 0, RECENT_KEPT - 1)
            if state == "dead":
                dead = list_key(delivery.tenant, delivery.name, "dead")
                pipe.lpush(dead, delivery.id)
                pipe.ltrim(dead, 0, DEAD_KEPT - 1)
            pipe.execute()

    def retry_later(self, delivery: Delivery, *, at_ms: int, status: int | None, error: str, now_ms: int) -> None:
        with translated_errors(), self.client.pipeline() as pipe:
            pipe.hset(delivery_key(delivery.id), mapping={
                "attempts": delivery.attempts + 1, "last_status": "" if status is None else status,
                "last_error": error, "next_at": at_ms, "updated_at": now_ms})
            pipe.zadd(DUE_KEY, {delivery.id: at_ms})
            pipe.execute()

    # -- what the API shows ---------------------------------------------------------------------
    def state(self, tenant: str, name: str, *, limit: int = 20) -> dict[str, Any]:
        """Counts and the latest pending, finished and dead deliveries of one subscription."""
        with translated_errors():
            with self.client.pipeline(transaction=False) as pipe:
                pipe.scard(list_key(tenant, name, "pending"))
                pipe.llen(list_key(tenant, name, "dead"))
                pipe.srandmember(list_key(tenant, name, "pending"), limit)
                pipe.lrange(list_key(tenant, name, "recent"), 0, limit - 1)
                pipe.lrange(list_key(tenant, name, "dead"), 0, limit - 1)
                pending_count, dead_count, pending, recent, dead = pipe.execute()
            show = self._records
            return {"pending": pending_count, "dead": dead_count,
                    "pending_deliveries": sorted(show(pending), key=lambda d: d["created_at"]),
                    "recent_deliveries": show(recent), "dead_letters": show(dead)}

    def _records(self, ids: list[bytes]) -> list[dict[str, Any]]:
        if not ids:
            return []
        fields = ("event_id", "action", "state", "attempts", "last_status", "last_error", "next_at", "created_at",
                  "updated_at")
        with self.client.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hmget(delivery_key(delivery_id.decode()), *fields)
            rows = pipe.execute()
        out = []
        for delivery_id, row in zip(ids, rows, strict=True):
            if row[0] is None:  # expired
                continue
            values = dict(zip(fields, (_text(v) for v in row), strict=True))
            record: dict[str, Any] = {"id": delivery_id.decode(), **values}
            for number in ("attempts", "last_status", "next_at", "created_at", "updated_at"):
                raw = values[number]
                record[number] = int(raw) if raw else None
            record["last_error"] = values["last_error"] or None
            out.append(record)
        return out


def now_ms(clock: Callable[[], float] = time.time) -> int:
    return int(clock() * 1000)
