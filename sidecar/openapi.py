"""The OpenAPI 3.1 document served at ``/openapi.json``: every route, its schemas, one place.

``ROUTES`` is the table of contents: method, path, token scope (None for open routes), summary,
request body schema, success status and response schema, extra error statuses, query
parameters. Schemas are JSON Schema 2020-12 (OpenAPI 3.1 uses it as is). The test suite runs
schemathesis against a live ``sidecar serve`` with this document, so a schema that disagrees with
what a route accepts or answers fails the build (tests/test_openapi_contract.py); another test
checks that every route the app serves is listed here.

Imports nothing of the sidecar: a leaf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ID_PATTERN = "^[A-Za-z0-9._-]{1,64}$"
RIGHT_PATTERN = "^[a-z_]+:[a-z_*]+$"

Schema = dict[str, Any]

_ID: Schema = {"type": "string", "pattern": ID_PATTERN}
_NULLABLE_ID: Schema = {"type": ["string", "null"], "pattern": ID_PATTERN}
_TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": 64}
_REVISION: Schema = {"type": "string", "description": "a Redis stream id such as 1764288000000-0"}
_STRINGS: Schema = {"type": "array", "items": {"type": "string"}}
_OBJ: Schema = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str] | None = None, **properties: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _closed(schema: Schema) -> Schema:
    """A request body whose route refuses fields it does not know (400 unexpected fields)."""
    return {**schema, "additionalProperties": False}


_DEVICE = _object(id={"type": "string"}, name={"type": "string"}, platform={"type": "string"},
                  user_agent={"type": "string"})
_CONTEXT = _object(mfa={"type": "boolean"}, ip={"type": "string"}, request_id={"type": "string"},
                   device=_DEVICE)
_MEMBERSHIP_FIELDS: dict[str, Schema] = {"roles": {"type": "array", "items": _ID}, "allow": _STRINGS, "deny": _STRINGS}
_EVENT = _object(
    id={"type": "string"}, time={"type": "string"}, location=_NULLABLE_ID, chain=_NULLABLE_ID,
    employee={"type": ["string", "null"]}, employee_name={"type": ["string", "null"]}, action={"type": "string"},
    category={"enum": ["login", "export", "edit", "delete", "access", "security"]},
    outcome={"type": ["string", "null"]}, object={"type": ["object", "null"]}, device={"type": ["object", "null"]},
    ip={"type": ["string", "null"]}, request_id={"type": ["string", "null"]}, details={"type": ["object", "null"]},
    prev_hash={"type": "string"}, hash={"type": "string"})
_TOKEN_SCOPES: Schema = {"type": "array", "items": {"enum": ["check", "admin", "billing", "audit", "security", "mfa"]}}
_TOKEN = _object(["name", "scopes"], name=_ID, scopes=_TOKEN_SCOPES)
_CATEGORIES: Schema = {"type": "array",
                       "items": {"enum": ["login", "export", "edit", "delete", "access", "security"]}}
_WEBHOOK = _object(["name", "url", "categories", "actions", "secret", "created_at"], name=_ID,
                   url={"type": "string"}, categories=_CATEGORIES, actions=_STRINGS,
                   secret={"const": "[set]"}, created_at={"type": "string"}, created={"type": "boolean"},
                   deliveries=_OBJ)

SCHEMAS: dict[str, dict[str, Any]] = {
    "TokenWrite": _closed(_object(["name", "scopes"], name=_ID, scopes=_TOKEN_SCOPES)),
    "TokenCreated": _object(["name", "scopes", "token"], name=_ID, scopes=_TOKEN_SCOPES, token={"type": "string"}),
    "Tokens": _object(["tokens"], tokens={"type": "array", "items": _TOKEN}),
    "TokenRevoked": _object(["name", "scopes", "revoked"], name=_ID, scopes=_TOKEN_SCOPES,
                            revoked={"const": True}),
    "TokenEvents": _object(["events"], events={"type": "array", "items": _EVENT}),
    "WebhookWrite": _closed(_object(["url", "secret"], url={"type": "string"}, categories=_CATEGORIES,
                                    actions=_STRINGS, secret={"type": "string", "minLength": 16})),
    "Webhook": _WEBHOOK,
    "Webhooks": _object(["webhooks"], webhooks={"type": "array", "items": _WEBHOOK}),
    "WebhookDeleted": _object(["name", "deleted"], name=_ID, deleted={"const": True}),
    "Error": _object(["error"], error=_object(["code", "message"], code={"type": "string"},
                                             message={"type": "string"})),
    "CheckRequest": _object(["employee", "location", "resource", "action"], employee=_ID, location=_ID,
                            resource=_TEXT, action=_TEXT, context=_CONTEXT, min_revision=_REVISION),
    "CheckAnswer": _object(["allowed", "decision_id", "reason"], allowed={"type": "boolean"},
                           decision_id={"type": "string"}, reason={"type": "string"},
                           explanation={"type": "object"}),
    "BatchRequest": _object(
        ["employee", "location", "checks"], employee=_ID, location=_ID, context=_CONTEXT, min_revision=_REVISION,
        checks={"type": "array", "minItems": 1, "maxItems": 100,
                "items": _object(["resource", "action"], resource=_TEXT, action=_TEXT, location=_ID, employee=_ID)}),
    "BatchAnswer": _object(["results"], results={"type": "array", "items": _object(
        ["resource", "action", "allowed", "reason"], resource={"type": "string"}, action={"type": "string"},
        allowed={"type": "boolean"}, reason={"type": "string"}, location=_ID, employee=_ID)}),
    "Rights": _object(["employee", "location", "rights"], employee=_ID, location=_ID, rights=_STRINGS,
                      revision={"type": ["string", "null"]}),
    "Roles": _object(["roles"], roles={"type": "array", "items": _object(["role", "rights"], role={"type": "string"},
                                                                         rights=_STRINGS)}),
    "EmployeeWrite": _closed(_object(["active"], active={"type": "boolean"},
                             email={"type": ["string", "null"], "format": "email"},
                             name={"type": ["string", "null"], "maxLength": 200})),
    "Employee": _object(["employee", "active"], employee=_ID, active={"type": "boolean"},
                        email={"type": ["string", "null"]}, name={"type": ["string", "null"]}),
    "ChainWrite": _closed(_object(owner=_NULLABLE_ID)),
    "Chain": _object(["chain"], chain=_ID, owner=_NULLABLE_ID),
    "LocationWrite": _closed(_object(chain=_NULLABLE_ID, owner=_NULLABLE_ID)),
    "Location": _object(["location"], location=_ID, chain=_NULLABLE_ID, owner=_NULLABLE_ID),
    "MembershipWrite": _closed(_object(["roles"], **_MEMBERSHIP_FIELDS, provides_services={"type": "boolean"})),
    "ChainMembershipWrite": _closed(_object(["roles"], **_MEMBERSHIP_FIELDS)),
    "Membership": _object(["employee", "roles", "allow", "deny"], employee=_ID, location=_ID, chain=_ID,
                          **_MEMBERSHIP_FIELDS, provides_services={"type": "boolean"}),
    "Members": _object(["employees", "next_cursor"], employees={"type": "array", "items": _ref("Membership")},
                       next_cursor={"type": ["string", "null"]}, revision={"type": ["string", "null"]}),
    "Memberships": _object(["employee", "memberships"], employee=_ID,
                           memberships={"type": "array", "items": _ref("Membership")}),
    "RoleWrite": _closed(_object(["rights"], rights=_STRINGS, inherits={"type": "array", "items": _ID})),
    "Role": _object(["role", "rights"], role=_ID, rights=_STRINGS, inherits={"type": "array", "items": _ID},
                    chain=_ID, location=_ID),
    "CustomRoles": _object(["roles"], roles={"type": "array", "items": _ref("Role")}),
    "WriteResult": _object(["revision"], revision=_REVISION, before={"type": ["object", "null"]},
                           after={"type": ["object", "null"]}),
    "AuditEventIn": _object(["location", "employee", "action", "outcome"], location=_ID, employee=_ID,
                            action={"type": "string", "minLength": 1, "maxLength": 64},
                            outcome={"type": "string", "minLength": 1, "maxLength": 64},
                            object=_object(type={"type": "string"}, id={"type": "string"}),
                            device=_DEVICE, ip={"type": "string"}, request_id={"type": "string"}, details=_OBJ),
    "Accepted": _object(["id"], id={"type": "string"}),
    "SecurityEvents": _object(["events", "next_cursor"], events={"type": "array", "items": _EVENT},
                              next_cursor={"type": ["string", "null"]}),
    "Seats": _object(["paid_seats", "free_seats", "employees"], scope=_OBJ, paid_seats={"type": "integer"},
                     free_seats={"type": "integer"}, revision={"type": ["string", "null"]},
                     computed_at={"type": "string"},
                     employees={"type": "array", "items": _object(["employee", "paid", "reasons"], employee=_ID,
                                                                  paid={"type": "boolean"}, reasons=_STRINGS)}),
    "SeatsPreviewRequest": _object(["changes"], location=_ID, chain=_ID, changes={"type": "array", "items": _object(
        ["employee"], employee=_ID, location=_ID, chain=_ID, membership={"type": ["object", "null"]})}),
    "SeatsPreview": _object(["paid_seats_before", "paid_seats_after", "changed"],
                            paid_seats_before={"type": "integer"}, paid_seats_after={"type": "integer"},
                            changed={"type": "array", "items": _OBJ}),
    "SeatsTransition": _object(
        ["legacy_paid_seats", "paid_seats", "employees", "revision"], scope=_OBJ, rule={"type": "string"},
        legacy_paid_seats={"type": "integer"}, paid_seats={"type": "integer"}, changed=_STRINGS,
        revision={"type": ["string", "null"]},
        employees={"type": "array", "items": _object(["employee", "paid_legacy", "paid", "reasons"], employee=_ID,
                                                     paid_legacy={"type": "boolean"}, paid={"type": "boolean"},
                                                     reasons=_STRINGS)}),
    "LegacyUsersRequest": _closed(_object(["users"], users={"type": "array", "items": _OBJ},
                                          apply={"type": "boolean"})),
    "LegacyUsersAnswer": _object(["applied", "employees", "seats"], applied={"type": "boolean"},
                                 employees={"type": "array", "items": _OBJ},
                                 seats={"type": "array", "items": _ref("SeatsTransition")}, revisions=_OBJ),
    "SeatsHistory": _object(["peak_paid_seats", "changes"], peak_paid_seats={"type": "integer"},
                            changes={"type": "array", "items": _object(
                                ["time", "paid_seats", "employee", "paid", "revision", "cause"],
                                time={"type": "string"}, paid_seats={"type": "integer"}, employee=_ID,
                                paid={"type": "boolean"}, revision=_REVISION,
                                cause={"enum": ["write", "import", "policy_reload", "rule_change"]})}),
    "ChallengeRequest": _object(["employee", "channel"], employee=_ID, channel={"enum": ["email", "push"]},
                                device={"type": ["string", "object"]}, ip={"type": "string"}),
    "Challenge": _object(["challenge_id", "channel", "expires_at"], challenge_id={"type": "string"},
                         channel={"type": "string"}, expires_at={"type": "string"}),
    "ChallengeStatus": _object(["status"], status={"enum": ["pending", "verified", "denied", "expired", "locked"]}),
    "VerifyRequest": _object(["code"], code={"type": "string"}),
    "ApproveRequest": _object(["device_id", "decision"], device_id={"type": "string"},
                              decision={"enum": ["approve", "deny"]}),
    "DeviceWrite": _object(["id", "platform", "push_token"], id=_ID, name={"type": "string"},
                           platform={"type": "string"}, push_token={"type": "string"}),
    "Devices": _object(["devices"], devices={"type": "array", "items": _OBJ}),
    "Status": _object(["status"], status={"type": "string"}),
    "Reload": _object(["reloaded"], reloaded={"type": "boolean"}, fingerprint={"type": "string"}),
}

_ERROR_TEXT = {
    400: "Bad input (invalid_id, unknown_right, bad_json, ...)",
    401: "No or unknown token",
    403: "The token lacks the route's scope, or the actor would escalate",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict with what is stored",
    413: "Body over 1 MiB",
    422: "Policies failed to load",
    423: "Locked",
    410: "Expired",
    429: "Rate limited (see Retry-After)",
    503: "A dependency (Redis) is unavailable, or a revision was not reached in time",
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str | None
    summary: str
    request: str | None = None
    response: str | None = "Status"
    status: int = 200
    errors: tuple[int, ...] = ()
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    content_type: str = "application/json"  # of the success answer; "" for none (a redirect)
    path_schema: dict[str, Any] = field(default_factory=lambda: _ID)
    error_type: str = "application/json"  # the console answers its refusals as HTML pages
    form: Schema | None = None  # an application/x-www-form-urlencoded body (the console's sign-in)
    auth: str | None = None  # x-auth: how a route without a token scope knows its caller


_SCOPE_QUERY: dict[str, Schema] = {"location": _ID, "chain": _ID}
_PAGE: dict[str, Schema] = {"limit": {"type": "integer", "minimum": 1, "maximum": 500}, "cursor": {"type": "string"}}
_ACTOR: dict[str, Schema] = {"actor": _ID}
_EVENTS_QUERY: dict[str, Schema] = {
    "viewer": _ID, "category": {"type": "string"}, "employee": _ID, "action": {"type": "string"},
    "since": {"type": "string"}, "until": {"type": "string"}, **_PAGE,
    "exclude": {"type": "string", "description": "actions left out, comma-separated or repeated "
                "(exclude=security_log:read hides the viewers' own page views)"},
    "format": {"enum": ["json", "csv"]}, "mfa": {"enum": ["0", "1"]}}
_WRITE = (400, 403, 404, 409, 503)

ROUTES: list[Route] = [
    Route("get", "/livez", None, "Liveness: the process answers"),
    Route("get", "/readyz", None, "Readiness: 503 until Redis is reachable and policies are loaded",
          response=None, errors=(503,)),
    Route("get", "/metrics", None, "Prometheus metrics", response=None, content_type="text/plain"),
    Route("get", "/openapi.json", None, "This document", response=None),
    Route("post", "/v1/check", "check", "Decide one right (?explain=1 for the explanation)", "CheckRequest",
          "CheckAnswer", errors=(400, 413, 503), query={"explain": {"enum": ["0", "1", "true"]}}),
    Route("post", "/v1/check/batch", "check", "Decide up to 100 rights; an item may name its own location/employee",
          "BatchRequest", "BatchAnswer", errors=(400, 413, 503)),
    Route("get", "/v1/locations/{location}/employees/{employee}/rights", "check", "Effective rights, sorted",
          response="Rights", errors=(400, 503)),
    Route("get", "/v1/roles", "admin", "Role templates with their rights", response="Roles"),
    Route("put", "/v1/employees/{employee}", "admin", "Create or change an employee", "EmployeeWrite",
          "WriteResult", errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/employees/{employee}", "admin", "An employee", response="Employee", errors=(400, 404, 503)),
    Route("delete", "/v1/employees/{employee}", "admin", "Remove an employee and every membership (addition)",
          response="WriteResult", errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/employees/{employee}/memberships", "admin", "An employee's memberships (addition)",
          response="Memberships", errors=(400, 404, 503)),
    Route("put", "/v1/chains/{chain}", "admin", "Create or change a chain", "ChainWrite", "WriteResult",
          errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/chains/{chain}", "admin", "A chain", response="Chain", errors=(400, 404, 503)),
    Route("put", "/v1/locations/{location}", "admin", "Create or change a location", "LocationWrite",
          "WriteResult", errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/locations/{location}", "admin", "A location", response="Location", errors=(400, 404, 503)),
    Route("delete", "/v1/locations/{location}", "admin", "Remove a location (409 with members unless ?cascade=1)",
          response="WriteResult", errors=_WRITE, query={**_ACTOR, "cascade": {"enum": ["0", "1"]}}),
    Route("get", "/v1/locations/{location}/employees", "admin", "Members of a location (addition)",
          response="Members", errors=(400, 404, 503), query=_PAGE),
    Route("get", "/v1/chains/{chain}/employees", "admin",
          "Every membership of a chain, chain-wide and per location (addition)", response="Members",
          errors=(400, 404, 503), query=_PAGE),
    Route("put", "/v1/locations/{location}/employees/{employee}", "admin", "Membership at a location",
          "MembershipWrite", "WriteResult", errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/locations/{location}/employees/{employee}", "admin", "Membership at a location",
          response="Membership", errors=(400, 404, 503)),
    Route("delete", "/v1/locations/{location}/employees/{employee}", "admin", "Remove a membership",
          response="WriteResult", errors=_WRITE, query=_ACTOR),
    Route("put", "/v1/chains/{chain}/employees/{employee}", "admin", "Chain-wide membership",
          "ChainMembershipWrite", "WriteResult", errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/chains/{chain}/employees/{employee}", "admin", "Chain-wide membership",
          response="Membership", errors=(400, 404, 503)),
    Route("delete", "/v1/chains/{chain}/employees/{employee}", "admin", "Remove a chain-wide membership",
          response="WriteResult", errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/chains/{chain}/roles", "admin", "A chain's custom roles (addition)",
          response="CustomRoles", errors=(400, 404, 503)),
    Route("get", "/v1/locations/{location}/roles", "admin", "A location's custom roles (addition)",
          response="CustomRoles", errors=(400, 404, 503)),
    Route("put", "/v1/chains/{chain}/roles/{role}", "admin", "A chain's custom role", "RoleWrite", "WriteResult",
          errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/chains/{chain}/roles/{role}", "admin", "A chain's custom role", response="Role",
          errors=(400, 404, 503)),
    Route("delete", "/v1/chains/{chain}/roles/{role}", "admin", "Remove a chain's custom role (409 while assigned)",
          response="WriteResult", errors=_WRITE, query=_ACTOR),
    Route("put", "/v1/locations/{location}/roles/{role}", "admin", "A location's custom role", "RoleWrite",
          "WriteResult", errors=_WRITE, query=_ACTOR),
    Route("get", "/v1/locations/{location}/roles/{role}", "admin", "A location's custom role", response="Role",
          errors=(400, 404, 503)),
    Route("delete", "/v1/locations/{location}/roles/{role}", "admin",
          "Remove a location's custom role (409 while assigned)", response="WriteResult", errors=_WRITE,
          query=_ACTOR),
    Route("post", "/v1/policies/reload", "admin", "Reload policies/ now (addition)", response="Reload",
          errors=(422,)),
    Route("post", "/v1/audit/events", "audit", "Report an event seen upstream; 202 {id} once durable",
          "AuditEventIn", "Accepted", status=202, errors=(400, 404, 413, 503)),
    Route("get", "/v1/locations/{location}/security-events", "security",
          "A location's security events, newest first (format=csv for text/csv)", response="SecurityEvents",
          errors=(400, 404, 503), query=_EVENTS_QUERY),
    Route("get", "/v1/chains/{chain}/security-events", "security",
          "A chain's security events, newest first (format=csv for text/csv)", response="SecurityEvents",
          errors=(400, 404, 503), query=_EVENTS_QUERY),
    Route("post", "/v1/mfa/challenges", "mfa", "Start a two-step challenge (email code or push)",
          "ChallengeRequest", "Challenge", status=201, errors=(400, 404, 409, 429, 503)),
    Route("get", "/v1/mfa/challenges/{challenge_id}", "mfa", "A challenge's status", response="ChallengeStatus",
          errors=(400, 404, 503)),
    Route("post", "/v1/mfa/challenges/{challenge_id}/verify", "mfa", "Verify an email code, once",
          "VerifyRequest", "ChallengeStatus", errors=(400, 404, 409, 410, 423, 503)),
    Route("post", "/v1/mfa/challenges/{challenge_id}/approve", "mfa", "The mobile app's answer to a push",
          "ApproveRequest", "ChallengeStatus", errors=(400, 403, 404, 409, 410, 503)),
    Route("post", "/v1/employees/{employee}/devices", "mfa", "Register a phone for push approvals", "DeviceWrite",
          None, status=201, errors=(400, 404, 503)),
    Route("get", "/v1/employees/{employee}/devices", "mfa", "An employee's registered phones (addition)",
          response="Devices", errors=(400, 503)),
    Route("delete", "/v1/employees/{employee}/devices/{device_id}", "mfa", "Remove a phone (addition)",
          response=None, errors=(400, 404, 503)),
    Route("get", "/v1/billing/seats", "billing", "Paid and free seats of ?chain= or ?location= (?rule=writes)",
          response="Seats", errors=(400, 404, 503), query={**_SCOPE_QUERY, "rule": {"enum": ["announced", "writes"]}}),
    Route("post", "/v1/billing/seats/preview", "billing",
          "Seats before and after membership changes (an employee who does not exist yet is a hire)",
          "SeatsPreviewRequest", "SeatsPreview", errors=(400, 404, 503)),
    Route("get", "/v1/billing/seats/transition", "billing",
          "Paid under the legacy terms (services only) and now, for every member (issue 14)",
          response="SeatsTransition", errors=(400, 404, 503),
          query={**_SCOPE_QUERY, "rule": {"enum": ["announced", "writes"]}}),
    Route("post", "/v1/migrations/legacy-users", "admin",
          "Legacy users to employees with roles: fitted roles and overrides, seat impact; apply writes (issue 14)",
          "LegacyUsersRequest", "LegacyUsersAnswer", errors=(400, 409, 503)),
    Route("get", "/v1/billing/seats/history", "billing", "Paid-status changes and peak paid seats",
          response="SeatsHistory", errors=(400, 404, 503),
          query={**_SCOPE_QUERY, "since": {"type": "string"}, "until": {"type": "string"}}),
]

# Issue 15: service tokens (scope admin).
ROUTES += [
    Route("post", "/v1/tokens", "admin", "Create a service token; the token is shown once (addition)", "TokenWrite",
          "TokenCreated", status=201, errors=(400, 409, 503)),
    Route("get", "/v1/tokens", "admin", "Names and scopes of the tokens, never a secret (addition)",
          response="Tokens", errors=(503,)),
    Route("get", "/v1/tokens/events", "admin", "Token changes, newest first (addition)", response="TokenEvents",
          errors=(503,), query={"limit": {"type": "integer", "minimum": 1, "maximum": 500}}),
    Route("delete", "/v1/tokens/{name}", "admin", "Revoke a token: 401 from the next request on (addition)",
          response="TokenRevoked", errors=(400, 404, 409, 503)),
]

# Issue 15: webhook subscriptions of a chain or a standalone location (scope security).
for _kind in ("chain", "location"):
    ROUTES += [
        Route("put", f"/v1/{_kind}s/{{{_kind}}}/webhooks/{{name}}", "security",
              f"Subscribe a webhook to a {_kind}'s security events (addition)", "WebhookWrite", "Webhook",
              errors=(400, 404, 409, 503)),
        Route("get", f"/v1/{_kind}s/{{{_kind}}}/webhooks/{{name}}", "security",
              "A webhook subscription and its delivery state (addition)", response="Webhook",
              errors=(400, 404, 409, 503)),
        Route("delete", f"/v1/{_kind}s/{{{_kind}}}/webhooks/{{name}}", "security",
              "Remove a webhook subscription (addition)", response="WebhookDeleted", errors=(400, 404, 409, 503)),
        Route("get", f"/v1/{_kind}s/{{{_kind}}}/webhooks", "security", f"A {_kind}'s webhook subscriptions (addition)",
              response="Webhooks", errors=(400, 404, 409, 503)),
    ]

# Issue 15: the web console (HTML). No token scope: an employee JWT (the forward-auth key) as
# Authorization: Bearer, or the HttpOnly cookie of POST /console/session; refusals are HTML pages.
_CONSOLE_AUTH = "employee JWT: Authorization: Bearer, or the sidecar_console cookie (POST /console/session)"
_CONSOLE_PAGE: dict[str, Any] = {"scope": None, "response": None, "content_type": "text/html",
                                 "error_type": "text/html", "auth": _CONSOLE_AUTH}
_CONSOLE_FILTERS: dict[str, Schema] = {
    "category": {"type": "string"}, "employee": {"type": "string"}, "action": {"type": "string"},
    "since": {"type": "string"}, "until": {"type": "string"}, "exclude": {"type": "string"}}
ROUTES += [
    Route("get", "/console/", summary="The console: the signed-in employee's places (401: the sign-in page)",
          errors=(401, 503), **_CONSOLE_PAGE),
    Route("post", "/console/session", None, "Sign in: an employee JWT (form field token) for an HttpOnly, "
          "SameSite=Strict cookie; 303 to /console/", response=None, status=303, content_type="",
          error_type="text/html", errors=(401, 403, 503),
          form=_object(["token"], token={"type": "string"})),
    Route("post", "/console/session/end", None, "Sign out: the cookie is cleared; 303 to /console/",
          response=None, status=303, content_type="", error_type="text/html", errors=(403,)),
    Route("get", "/console/static/{filename}", None, "The console's stylesheet", response=None,
          content_type="text/css", errors=(404,), path_schema={"type": "string", "minLength": 1}),
    Route("get", "/console/locations/{location}/rights",
          summary="An employee's effective rights at a location (access:manage there)", errors=(401, 403, 404, 503),
          query={"employee": {"type": "string"}}, **_CONSOLE_PAGE),
]
for _kind in ("chain", "location"):
    ROUTES += [
        Route("get", f"/console/{_kind}s/{{{_kind}}}/security",
              summary=f"A {_kind}'s Security section: filters, paging (security_log:read)",
              errors=(401, 403, 404, 503), query={**_CONSOLE_FILTERS, "cursor": {"type": "string"}}, **_CONSOLE_PAGE),
        Route("get", f"/console/{_kind}s/{{{_kind}}}/security.csv",
              summary=f"A {_kind}'s security events as CSV (security_log:export, two-step session)",
              errors=(401, 403, 404, 503), query=_CONSOLE_FILTERS,
              **{**_CONSOLE_PAGE, "content_type": "text/csv"}),
        Route("get", f"/console/{_kind}s/{{{_kind}}}/seats", summary=f"A {_kind}'s seats with reasons (billing:manage)",
              errors=(401, 403, 404, 503), **_CONSOLE_PAGE),
    ]

# Forward-auth answers any method: nginx and Traefik send the original request in headers,
# Envoy's ext_authz forwards the request itself under the prefix (/v1/forward-auth/<original path>).
ROUTES += [
    Route(method, path, None, "Forward-auth for nginx/Traefik/Envoy: employee JWT + original request -> 200/401/403",
          response=None, errors=(401, 403, 503), path_schema={"type": "string", "minLength": 1})
    for path in ("/v1/forward-auth", "/v1/forward-auth/{rest}")
    for method in ("get", "post", "put", "patch", "delete")
]


def _operation(route: Route) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "OK" if route.status < 300 else "Redirect"}
    if not route.content_type:
        pass
    elif route.response is not None:
        success["content"] = {route.content_type: {"schema": _ref(route.response)}}
    elif route.content_type != "application/json":
        success["content"] = {route.content_type: {"schema": {"type": "string"}}}
    else:
        success["content"] = {"application/json": {"schema": _OBJ}}
    responses: dict[str, Any] = {str(route.status): success}
    errors = set(route.errors) | {400}
    if route.scope is not None:
        errors |= {401, 403}
    if route.request is not None:
        errors |= {413}
    for status in sorted(errors):
        schema = _ref("Error") if route.error_type == "application/json" else {"type": "string"}
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": {route.error_type: {"schema": schema}}}
    operation: dict[str, Any] = {"summary": route.summary, "operationId": _operation_id(route),
                                 "responses": responses}
    if route.scope is not None:
        operation["security"] = [{"bearer": []}]
        operation["x-scope"] = route.scope
    if route.auth is not None:
        operation["x-auth"] = route.auth
    parameters = [{"name": p, "in": "path", "required": True, "schema": route.path_schema}
                  for p in (part[1:-1] for part in route.path.split("/") if part.startswith("{"))]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema}
                   for name, schema in route.query.items()]
    if parameters:
        operation["parameters"] = parameters
    if route.request is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": _ref(route.request)}}}
    if route.form is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/x-www-form-urlencoded": {"schema": route.form}}}
    return operation


def _operation_id(route: Route) -> str:
    words = [part.strip("{}").replace("-", "_").replace(".", "_") for part in route.path.split("/") if part]
    return "_".join([route.method, *words])


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Authorization sidecar", "version": "1",
                 "description": "Each operation's x-scope names the token scope it needs."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": SCHEMAS},
        "paths": paths,
    }
