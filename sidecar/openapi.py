"""The OpenAPI 3.1 document served at ``/openapi.json``: one table of routes, one place."""

from __future__ import annotations

from typing import Any

# (method, path, scope or None for open routes, summary)
ROUTES: list[tuple[str, str, str | None, str]] = [
    ("get", "/livez", None, "Liveness"),
    ("get", "/readyz", None, "Readiness: 503 until Redis is reachable and policies are loaded"),
    ("get", "/metrics", None, "Prometheus metrics"),
    ("get", "/openapi.json", None, "This document"),
    ("post", "/v1/check", "check", "Decide one right (?explain=1 for the explanation)"),
    ("post", "/v1/check/batch", "check", "Decide up to 100 rights for one employee at one location"),
    ("get", "/v1/locations/{location}/employees/{employee}/rights", "check", "Effective rights, sorted"),
    ("get", "/v1/roles", "admin", "Role templates with their rights"),
    ("put", "/v1/employees/{employee}", "admin", "Create or change an employee"),
    ("get", "/v1/employees/{employee}", "admin", "An employee"),
    ("put", "/v1/chains/{chain}", "admin", "Create or change a chain"),
    ("get", "/v1/chains/{chain}", "admin", "A chain"),
    ("put", "/v1/locations/{location}", "admin", "Create or change a location"),
    ("get", "/v1/locations/{location}", "admin", "A location"),
    ("put", "/v1/locations/{location}/employees/{employee}", "admin", "Membership at a location"),
    ("get", "/v1/locations/{location}/employees/{employee}", "admin", "Membership at a location"),
    ("delete", "/v1/locations/{location}/employees/{employee}", "admin", "Remove a membership"),
    ("put", "/v1/chains/{chain}/employees/{employee}", "admin", "Chain-wide membership"),
    ("get", "/v1/chains/{chain}/employees/{employee}", "admin", "Chain-wide membership"),
    ("delete", "/v1/chains/{chain}/employees/{employee}", "admin", "Remove a chain-wide membership"),
    ("put", "/v1/chains/{chain}/roles/{role}", "admin", "A chain's custom role"),
    ("get", "/v1/chains/{chain}/roles/{role}", "admin", "A chain's custom role"),
    ("put", "/v1/locations/{location}/roles/{role}", "admin", "A location's custom role"),
    ("get", "/v1/locations/{location}/roles/{role}", "admin", "A location's custom role"),
    ("post", "/v1/policies/reload", "admin", "Reload policies/ now (addition)"),
    ("post", "/v1/audit/events", "audit", "Report an event seen upstream; 202 {id} once durable"),
    ("get", "/v1/locations/{location}/security-events", "security", "A location's security events, newest first"),
    ("get", "/v1/chains/{chain}/security-events", "security", "A chain's security events, newest first"),
    ("get", "/v1/forward-auth", None, "Forward-auth for nginx/Traefik/Envoy: JWT + original request -> 200/401/403"),
    ("post", "/v1/mfa/challenges", "mfa", "Start a two-step challenge (email code or push)"),
    ("get", "/v1/mfa/challenges/{challenge_id}", "mfa", "A challenge's status"),
    ("post", "/v1/mfa/challenges/{challenge_id}/verify", "mfa", "Verify an email code, once"),
    ("post", "/v1/mfa/challenges/{challenge_id}/approve", "mfa", "The mobile app's answer to a push"),
    ("post", "/v1/employees/{employee}/devices", "mfa", "Register a phone for push approvals"),
    ("get", "/v1/employees/{employee}/devices", "mfa", "An employee's registered phones (addition)"),
    ("delete", "/v1/employees/{employee}/devices/{device_id}", "mfa", "Remove a phone (addition)"),
    ("get", "/v1/billing/seats", "billing", "Paid and free seats of ?chain= or ?location= (?rule=writes)"),
    ("post", "/v1/billing/seats/preview", "billing", "Seats before and after membership changes; nothing stored"),
    ("get", "/v1/billing/seats/history", "billing", "Paid-status changes and peak paid seats over ?since=&until="),
]

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"},
                                                              "message": {"type": "string"}}}},
}


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, scope, summary in ROUTES:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "200": {"description": "OK"},
                "400": {"description": "Bad input", "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        if scope is not None:
            operation["security"] = [{"bearer": []}]
            operation["x-scope"] = scope
            operation["responses"]["401"] = {"description": "No or unknown token"}
            operation["responses"]["403"] = {"description": f"Token lacks the {scope} scope"}
        params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}} for p in params
            ]
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Authorization sidecar", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
