"""Shared helpers for the audit tests (no tests here): a seeded directory and log readers."""

from __future__ import annotations

from typing import Any

import redis

from sidecar.store.audit_log import AuditLog

# ch-1 has l-1 and l-2; l-9 stands alone.
# boss: owner chain-wide. sec: system_manager at l-1 only. chief: manager chain-wide.
# e-1: administrator at l-1. solo: manager at l-9. idle: a member with no rights at l-1.
SEED: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chains/ch-1", {}),
    ("/v1/locations/l-1", {"chain": "ch-1"}),
    ("/v1/locations/l-2", {"chain": "ch-1"}),
    ("/v1/locations/l-9", {"chain": None}),
    ("/v1/employees/boss", {"active": True}),
    ("/v1/employees/sec", {"active": True}),
    ("/v1/employees/chief", {"active": True}),
    ("/v1/employees/e-1", {"active": True}),
    ("/v1/employees/solo", {"active": True}),
    ("/v1/employees/idle", {"active": True}),
    ("/v1/chains/ch-1/employees/boss", {"roles": ["owner"]}),
    ("/v1/chains/ch-1", {"owner": "boss"}),  # a designated owner is a member first
    ("/v1/chains/ch-1/employees/chief", {"roles": ["manager"]}),
    ("/v1/locations/l-1/employees/sec", {"roles": ["system_manager"]}),
    ("/v1/locations/l-1/employees/e-1", {"roles": ["administrator"]}),
    ("/v1/locations/l-9/employees/solo", {"roles": ["manager"]}),
    ("/v1/locations/l-1/employees/idle", {"roles": []}),
]


def seed(api: Any) -> None:
    for path, body in SEED:
        response = api.put(path, body)
        assert response.status_code == 200, (path, response.get_json())


def read_log(url: str, log: str) -> list[dict[str, Any]]:
    """Every event of a log, oldest first."""
    client = redis.Redis.from_url(url)
    try:
        return list(reversed(list(AuditLog(client, 400).newest_first(log))))
    finally:
        client.close()


def audit_log(client: redis.Redis) -> AuditLog:
    """The audit log store over ``client`` (the caller closes it: a dropped client leaks its socket)."""
    return AuditLog(client, 400)


def report(api: Any, **body: Any) -> Any:
    payload = {"location": "l-1", "employee": "e-1", "action": "login", "outcome": "success", **body}
    return api.post("/v1/audit/events", payload, scope="audit")


def shipped(api: Any) -> None:
    """Ship the app's journaled check events now (the shipper thread does it within moments)."""
    api.app.extensions["sidecar"].auditor.flush()
