"""Token changes as audit events (category ``security``) in the sidecar-wide log ``sidecar``.

Tokens belong to no chain or location, so their trail has a log of its own, hash-chained like
the others (``sc:audit:sidecar``), read at ``GET /v1/tokens/events``. The HTTP routes record
through the runtime's auditor (Redis, else the fsync'd spool); ``sidecar token`` records
straight into Redis when one is reachable (the configured one, or the embedded one of a
running ``sidecar serve``) and says so on stderr when none is.

Imports: the audit events and writer, the audit log store, config, errors.
"""

from __future__ import annotations

from typing import Any

from sidecar.audit.auditor import Auditor
from sidecar.audit.events import new_event
from sidecar.config import Settings
from sidecar.errors import StoreUnavailable
from sidecar.store.audit_log import AuditLog
from sidecar.store.connection import connect
from sidecar.store.redis_server import RedisServer

LOG = "sidecar"


def token_event(action: str, name: str, scopes: list[str], by: str | None, request_id: str | None,
                source: str) -> dict[str, Any]:
    return new_event(category="security", action=action, outcome="success", employee=None, location=None,
                     chain=None, object={"type": "token", "id": name}, device=None, ip=None, request_id=request_id,
                     details={"name": name, "scopes": scopes, "by": by, "source": source})


def record(auditor: Auditor, action: str, name: str, scopes: list[str], *, by: str | None,
           request_id: str | None) -> None:
    """Record a change made over HTTP (by the calling token ``by``); durable before it returns."""
    auditor.record([(LOG, token_event(action, name, scopes, by, request_id, "http"))])


def record_from_cli(settings: Settings, action: str, name: str, scopes: list[str]) -> str | None:
    """Record a change made by ``sidecar token``; the event id, or None when no Redis answers."""
    if settings.redis_url:
        url = settings.redis_url
    else:
        embedded = RedisServer(settings.data_dir / "redis")
        if not embedded.ping():  # no server running: nothing to record into (the CLI says so)
            return None
        url = embedded.url
    client = connect(url)
    event = token_event(action, name, scopes, None, None, "cli")
    try:
        AuditLog(client, settings.audit_retention_days).append_many([(LOG, event)])
    except StoreUnavailable:
        return None
    finally:
        client.close()
    return str(event["id"])
