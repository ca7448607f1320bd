"""What every answered request leaves behind: one structlog line and the HTTP metrics.

Shared by the Flask pipeline and the decision fast path, so both log and count alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from sidecar import metrics
from sidecar.policy.decisions import Decision

log = structlog.get_logger("sidecar.http")


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a fresh one."""
    if incoming and len(incoming) <= 128 and incoming.isprintable():
        return incoming
    return uuid.uuid4().hex


def begin(rid: str) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid)


def finish(method: str, route: str, status: int, duration_s: float, decisions: Sequence[Decision] = ()) -> None:
    metrics.REQUESTS.labels(route, str(status)).inc()
    metrics.LATENCY.labels(route).observe(duration_s)
    fields: dict[str, Any] = {"method": method, "route": route, "status": status,
                              "duration_ms": round(duration_s * 1000, 3)}
    if decisions:
        for decision in decisions:
            metrics.DECISIONS.labels("true" if decision.allowed else "false", decision.reason).inc()
        if len(decisions) == 1:
            fields.update(right=decisions[0].right, allowed=decisions[0].allowed, reason=decisions[0].reason)
        else:
            fields.update(checks=len(decisions), allowed_count=sum(d.allowed for d in decisions))
    log.info("request", **fields)
