"""``/v1/forward-auth``: may the employee behind a proxied request do what it does?

Contract
--------
``blueprint(app, settings)`` builds the routes; ``sidecar.api.register`` registers it. The
runtime builds the JWT verifier from the settings (a key it cannot use raises
:class:`~sidecar.config.ConfigError`: the start fails) and the policy bundle compiles
``routes.yaml`` (a broken file raises :class:`~sidecar.policy.files.PolicyFileError` naming
``routes.yaml:LINE``: the start fails).

Routes: ``/v1/forward-auth`` and ``/v1/forward-auth/<path>`` (plus the same two under
``SIDECAR_FORWARD_AUTH_PREFIX`` when it differs), every HTTP method (nginx forces GET, Envoy
sends the client's method), no sidecar token (the proxy is the caller), no slash merging or
redirects (``//`` is part of what is authorised, not something to redirect).

Per call: :func:`~sidecar.forward_auth.query.build_query` on the *raw* request-target, then
``runtime.decide(employee, location, right, mfa=amr contains "mfa")`` with the engine of
``/v1/check``, then ``runtime.checked(CheckRecord(..., source="forward_auth"))`` (critical rights
are audited as for ``/v1/check``) and ``g.decisions`` (the request log). Answers:

* 200 ``{"allowed": true, ...}`` with ``X-Employee-Id`` and ``X-Decision-Id``;
* 401 ``invalid_token`` with ``WWW-Authenticate: Bearer ...`` on a missing or bad JWT;
* 403 ``denied`` (with ``X-Decision-Id``) when the policy says no, 403 ``forbidden`` with a
  ``reason`` for no route, no/invalid location, a path trick or an ambiguous original request
  (never 400: nginx ``auth_request`` turns any status but 2xx/401/403 into a 500);
* 503 when no JWT key is configured, or Redis is unavailable (fail closed).

The raw target is ``RAW_URI`` (gunicorn, werkzeug) or ``REQUEST_URI``. Without either (another
WSGI server), it is rebuilt from ``SCRIPT_NAME`` + ``PATH_INFO``, re-quoted, + ``QUERY_STRING``:
such a server already decoded the path, so ``%2F`` and ``%2e`` tricks can no longer be told
apart from ``/`` and ``.``; they are still normalised, never passed through. granian (the
default server) is such a server: the Envoy style gets the full checks under
``sidecar serve --server gunicorn``; nginx and Traefik send the original URI in a header.

The route table is compiled once per policy bundle: a reload that changes ``routes.yaml`` is
picked up on the next call; a reload whose ``routes.yaml`` is broken keeps the last good table
(and logs ``forward_auth_routes_failed``), as a broken policy reload keeps the last bundle.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import structlog
from flask import Blueprint, Flask, Response, g, request
from werkzeug.routing import PathConverter

from sidecar.api.context import current_runtime
from sidecar.api.edge import reply
from sidecar.config import DEFAULT_FORWARD_AUTH_PREFIX, Settings
from sidecar.forward_auth.jwt_auth import InvalidToken
from sidecar.forward_auth.query import build_query
from sidecar.policy.records import CheckRecord

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # RFC 3986 pchar minus % (re-quoted), plus /

log = structlog.get_logger("sidecar.forward_auth")


class AnyPath(PathConverter):
    """Like ``path`` but may start with ``/`` or be empty: ``{prefix}//a`` is authorised, not a 404."""

    regex = ".*"
    part_isolating = False  # werkzeug would infer True: the regex has no "/"


def blueprint(app: Flask, settings: Settings) -> Blueprint:
    """The forward-auth routes under the default prefix and the configured one (rules depend on settings)."""
    prefixes = [DEFAULT_FORWARD_AUTH_PREFIX]
    configured = settings.forward_auth_prefix.rstrip("/")
    if configured and configured != DEFAULT_FORWARD_AUTH_PREFIX:
        prefixes.append(configured)
    bp = Blueprint("forward_auth", __name__)  # one per app: rules depend on its settings
    rules = [rule for prefix in prefixes for rule in (prefix, f"{prefix}/<fa_path:rest>")]
    app.url_map.converters["fa_path"] = AnyPath
    for index, rule in enumerate(rules):
        bp.add_url_rule(rule, view_func=forward_auth, methods=METHODS, endpoint=f"call_{index}",
                        merge_slashes=False, strict_slashes=False, provide_automatic_options=False)
    bp.register_error_handler(InvalidToken, _invalid_token)
    return bp


def _raw_target(environ: dict[str, Any]) -> str:
    """The request-target as the client sent it; see the module docstring for the fallback."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    # PEP 3333: PATH_INFO is the decoded bytes as latin-1 characters.
    target = quote(path.encode("latin-1", "replace"), safe=_PATH_SAFE) or "/"
    query = environ.get("QUERY_STRING")
    return f"{target}?{query}" if query else target


def _client_ip() -> str | None:
    forwarded = request.headers.get("X-Forwarded-For", "")
    first = forwarded.split(",", 1)[0].strip()
    return first or request.headers.get("X-Real-IP", "").strip() or request.remote_addr


def _prefix_of_call() -> str:
    rule = request.url_rule.rule if request.url_rule is not None else DEFAULT_FORWARD_AUTH_PREFIX
    return rule.removesuffix("/<fa_path:rest>")


def forward_auth(rest: str | None = None) -> Response:
    runtime = current_runtime()
    query = build_query(
        verifier=runtime.jwt_verifier,
        routes=runtime.bundle.routes,  # the current bundle's (a broken reload keeps the last good one)
        method=request.method,
        target=_raw_target(request.environ),
        headers=list(request.headers.items()),
        prefix=_prefix_of_call(),
    )
    decision = runtime.decide(query.employee, query.location, query.right, mfa=query.mfa)
    decision_id = uuid.uuid4().hex
    g.decisions = [*g.get("decisions", []), decision]
    context: dict[str, Any] = {"mfa": query.mfa, "ip": _client_ip(),
                               "device": {"user_agent": request.headers.get("User-Agent")}}
    runtime.checked(CheckRecord(query.employee, query.location, [(decision, decision_id)], context,
                                g.get("request_id"), "forward_auth"))
    summary = {"employee": query.employee, "location": query.location, "right": query.right,
               "decision_id": decision_id, "reason": decision.reason}
    if not decision.allowed:
        response = reply({"error": {"code": "denied", "message": f"{query.right} is denied at {query.location}",
                                    **summary}}, 403)
    else:
        response = reply({"allowed": True, **summary})
        response.headers["X-Employee-Id"] = query.employee
    response.headers["X-Decision-Id"] = decision_id
    return response


def _invalid_token(error: InvalidToken) -> Response:
    response = reply(error.body(), error.status)
    # RFC 6750 3.1: no error code when the request carried no token at all.
    response.headers["WWW-Authenticate"] = (
        "Bearer" if error.reason == "missing_token" else 'Bearer error="invalid_token"'
    )
    return response
