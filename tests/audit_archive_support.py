"""Build audit logs with chosen positions (stream ids in the past) straight into Redis.

The append script always takes Redis's clock; tests of the archive need months-old events, so
``write_chain`` appends with explicit stream ids and computes the links as the script would.
"""

from __future__ import annotations

from typing import Any

import redis

from sidecar.store.audit_log import GENESIS, LOGS_KEY, canonical, link, meta_key, stream_key

EMPLOYEES = ("e1", "e2", "e3")
CATEGORIES = ("login", "export", "edit", "delete", "access", "security")
ACTIONS = ("client:read", "client:export", "client:delete")
LOCATIONS = ("l1", "l2")


def iso(ms: int) -> str:
    from datetime import UTC, datetime
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def event_at(i: int, ms: int, chain: str = "c1") -> dict[str, Any]:
    return {"id": f"ev{i:08d}", "time": iso(ms), "location": LOCATIONS[i % 2], "chain": chain,
            "employee": EMPLOYEES[i % 3], "action": ACTIONS[i % 3], "category": CATEGORIES[i % 6],
            "outcome": "allowed", "object": None, "device": {"id": f"d{i}"}, "ip": "10.0.0.1",
            "request_id": None, "details": {"n": i}}


def write_chain(client: redis.Redis, log: str, times_ms: list[int], *, first: int = 0) -> list[dict[str, Any]]:
    """Append one event per time (increasing), continuing the log's chain; returns them as the API shows them."""
    head = client.hget(meta_key(log), "head")
    prev = head.decode() if head else GENESIS
    out = []
    for n, ms in enumerate(times_ms):
        event = event_at(first + n, ms, chain=log[2:])
        body = canonical(event)
        digest = link(prev, body)
        sid = client.xadd(stream_key(log), {"e": body, "p": prev, "h": digest}, id=f"{ms}-{first + n}")
        out.append({**event, "prev_hash": prev, "hash": digest, "_sid": sid.decode()})
        prev = digest
    client.hset(meta_key(log), "head", prev)
    client.hincrby(meta_key(log), "count", len(times_ms))
    client.sadd(LOGS_KEY, log)
    return out
