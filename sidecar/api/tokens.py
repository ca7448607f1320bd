"""Service tokens over HTTP (scope ``admin``), the same operations as ``sidecar token``.

    POST   /v1/tokens          {"name", "scopes": [...]} -> 201 {"name", "scopes", "token"} (shown once)
    GET    /v1/tokens          -> {"tokens": [{"name", "scopes"}]} (never a secret or a hash)
    DELETE /v1/tokens/{name}   -> 200 {"name", "scopes", "revoked": true}; the token answers 401 from then on
    GET    /v1/tokens/events   -> {"events": [...]} the token changes, newest first (``?limit``, default 100)

Every change is an audit event (category ``security``, action ``token:create`` /
``token:revoke``, details: the token's name and scopes and the calling token's name) in the
sidecar-wide log ``sidecar`` (:data:`sidecar.audit.tokens.LOG`): tokens belong to no chain.
The last token holding ``admin`` cannot be revoked over HTTP (409): that would lock every
administrator out; ``sidecar token revoke`` on the host can.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import json_body, reply
from sidecar.audit import tokens as token_audit
from sidecar.audit.query import Query, search
from sidecar.errors import BadRequest, Conflict, NotFound
from sidecar.tokens import TokenError, TokenExists, TokenUnknown, check_name

bp = Blueprint("tokens", __name__)


@bp.post("/v1/tokens")
@require_scope("admin")
def create_token() -> Any:
    body = json_body()
    extra = sorted(set(body) - {"name", "scopes"})
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    runtime = current_runtime()
    try:
        name = check_name(body.get("name"))
        secret = runtime.tokens.create(name, body.get("scopes"))  # type: ignore[arg-type]  # checked inside
    except TokenExists as exc:
        raise Conflict(str(exc)) from None
    except TokenError as exc:
        raise BadRequest(str(exc)) from None
    scopes = sorted(set(body["scopes"]))
    token_audit.record(runtime.auditor, "token:create", name, scopes, by=g.get("token_name"),
                       request_id=g.get("request_id"))
    return reply({"name": name, "scopes": scopes, "token": secret}, 201)


@bp.get("/v1/tokens")
@require_scope("admin")
def list_tokens() -> Any:
    return reply({"tokens": [t.public() for t in current_runtime().tokens.all()]})


@bp.delete("/v1/tokens/<name>")
@require_scope("admin")
def revoke_token(name: str) -> Any:
    runtime = current_runtime()
    try:
        check_name(name)
    except TokenError as exc:
        raise BadRequest(str(exc), field="name") from None
    tokens = runtime.tokens.all()
    target = next((t for t in tokens if t.name == name), None)
    if target is None:
        raise NotFound(f"no token named {name!r}")
    if "admin" in target.scopes and not any("admin" in t.scopes for t in tokens if t.name != name):
        raise Conflict("this is the last token with the admin scope; create another one first",
                       reason="last_admin_token")
    try:
        gone = runtime.tokens.revoke(name)
    except TokenUnknown:  # revoked by someone else meanwhile
        raise NotFound(f"no token named {name!r}") from None
    scopes = sorted(gone.scopes)
    token_audit.record(runtime.auditor, "token:revoke", name, scopes, by=g.get("token_name"),
                       request_id=g.get("request_id"))
    return reply({**gone.public(), "revoked": True})


@bp.get("/v1/tokens/events")
@require_scope("admin")
def token_events() -> Any:
    raw = request.args.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 500:
        raise BadRequest("limit must be an integer from 1 to 500", field="limit")
    events = []
    for event in search(current_runtime().audit_log, token_audit.LOG, Query(), scan_budget=None):
        events.append({k: v for k, v in event.items() if not k.startswith("_")})
        if len(events) == int(raw):
            break
    return reply({"events": events})
