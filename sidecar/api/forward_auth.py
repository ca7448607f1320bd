"""``/v1/forward-auth``: may the employee behind a proxied request do what it does?

Contract
--------
:class:`ForwardAuthRoutes` finds a forward-auth call by its path and :func:`answer` answers it;
both run in the WSGI fast path (:class:`sidecar.api.fast_path.DecisionRoutes`), before Flask,
through the same edge as every other route (:mod:`sidecar.api.edge`: error bodies, headers,
request id, log line, metrics; :mod:`sidecar.api.limits`). Flask never sees these calls: a
forward-auth call is a decision, on the proxy's hot path. The runtime builds the JWT verifier
from the settings (a key it cannot use raises
:class:`~sidecar.config.ConfigError`: the start fails) and the policy bundle compiles
``routes.yaml`` (a broken file raises :class:`~sidecar.policy.files.PolicyFileError` naming
``routes.yaml:LINE``: the start fails).

Paths: ``/v1/forward-auth`` and ``/v1/forward-auth/<path>`` (plus the same two under
``SIDECAR_FORWARD_AUTH_PREFIX`` when it differs), every HTTP method (the documented nginx block
sends HEAD, Envoy the client's method), no sidecar token (the proxy is the caller), no slash
merging or redirects (``//`` is part of what is authorised, not something to redirect). The request log
and the metrics name the route ``<prefix>`` or ``<prefix>/<fa_path:rest>``.

Per call: :func:`~sidecar.forward_auth.query.build_query` on the *raw* request-target, then
``runtime.decide(employee, location, right, mfa=amr contains "mfa")`` with the engine of
``/v1/check``, then ``runtime.checked(CheckRecord(..., source="forward_auth"))`` (critical rights
are audited as for ``/v1/check``); the decision goes to the request's log line. Answers:

* 200 ``{"allowed": true, ...}`` with ``X-Employee-Id`` and ``X-Decision-Id``;
* 401 ``invalid_token`` with ``WWW-Authenticate: Bearer ...`` on a missing or bad JWT;
* 403 ``denied`` (with ``X-Decision-Id``) when the policy says no, 403 ``forbidden`` with a
  ``reason`` for no route, no/invalid location, a path trick or an ambiguous original request
  (never 400: nginx ``auth_request`` turns any status but 2xx/401/403 into a 500);
* 503 when no JWT key is configured, or Redis is unavailable (fail closed);
* 405 (JSON, with ``Allow``) for a method outside :data:`METHODS`; the edge's limits (414, 431,
  413, 400 ``invalid_body``) as on every route. A HEAD answer has the headers of the GET one and
  no body.

The raw target is ``RAW_URI`` (gunicorn, werkzeug) or ``REQUEST_URI``. Without either (another
WSGI server), it is rebuilt from ``SCRIPT_NAME`` + ``PATH_INFO``, re-quoted, + ``QUERY_STRING``:
such a server already decoded the path, so ``%2F`` and ``%2e`` tricks can no longer be told
apart from ``/`` and ``.``; they are still normalised, never passed through. granian (the
default server) is such a server: the Envoy style gets the full checks under
``sidecar serve --server gunicorn``; nginx and Traefik send the original URI in a header.

The route table is compiled once per policy bundle: a reload that changes ``routes.yaml`` is
picked up on the next call; a reload whose ``routes.yaml`` is broken keeps the last good table
(and logs ``forward_auth_routes_failed``), as a broken policy reload keeps the last bundle.

Imports: the api edge, the runtime, forward_auth, policy values, config, errors (no Flask here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sidecar.api.edge import new_id
from sidecar.config import DEFAULT_FORWARD_AUTH_PREFIX, Settings
from sidecar.errors import SidecarError
from sidecar.forward_auth.jwt_auth import InvalidToken
from sidecar.forward_auth.query import HEADERS, build_query
from sidecar.policy.decisions import Decision
from sidecar.policy.records import CheckRecord
from sidecar.runtime import Runtime

METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")  # sorted: the Allow header of a 405
_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # RFC 3986 pchar minus % (re-quoted), plus /


class ForwardAuthRoutes:
    """The forward-auth paths of one app: the default prefix and the configured one."""

    def __init__(self, settings: Settings) -> None:
        prefixes = {DEFAULT_FORWARD_AUTH_PREFIX}
        configured = settings.forward_auth_prefix.rstrip("/")
        if configured:
            prefixes.add(configured)
        self.prefixes = sorted(prefixes, key=len, reverse=True)  # the longest prefix a path is under wins

    def match(self, path: str) -> tuple[str, str] | None:
        """``(prefix, route name)`` when ``path`` (PATH_INFO) is a forward-auth call, else None."""
        for prefix in self.prefixes:
            if path.startswith(prefix):
                if len(path) == len(prefix):
                    return prefix, prefix
                if path[len(prefix)] == "/":
                    return prefix, f"{prefix}/<fa_path:rest>"
        return None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]]
    decisions: list[Decision]


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


# build_query's headers as WSGI environ keys. PEP 3333 gives each header one key (copies joined
# with commas), so these pairs are all it would read among the whole request's headers.
_QUERY_HEADERS = tuple(("HTTP_" + name.upper().replace("-", "_"), name) for name in HEADERS)


def _headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The call's headers that :func:`build_query` reads, as (lower-case name, value)."""
    return [(name, environ[key]) for key, name in _QUERY_HEADERS if key in environ]


def _client_ip(environ: dict[str, Any]) -> str | None:
    first = environ.get("HTTP_X_FORWARDED_FOR", "").split(",", 1)[0].strip()
    return first or environ.get("HTTP_X_REAL_IP", "").strip() or environ.get("REMOTE_ADDR")


def answer(runtime: Runtime, environ: dict[str, Any], prefix: str, rid: str) -> Answer:
    """Answer one forward-auth call under ``prefix``; raises a SidecarError for a refusal
    (answered with :func:`error_headers`)."""
    query = build_query(
        verifier=runtime.jwt_verifier,
        routes=runtime.bundle.routes,  # the current bundle's (a broken reload keeps the last good one)
        method=environ.get("REQUEST_METHOD", ""),
        target=_raw_target(environ),
        headers=_headers(environ),
        prefix=prefix,
    )
    decision = runtime.decide(query.employee, query.location, query.right, mfa=query.mfa)
    decision_id = new_id()
    context: dict[str, Any] = {"mfa": query.mfa, "ip": _client_ip(environ),
                               "device": {"user_agent": environ.get("HTTP_USER_AGENT")}}
    runtime.checked(CheckRecord(query.employee, query.location, [(decision, decision_id)], context, rid,
                                "forward_auth"))
    summary = {"employee": query.employee, "location": query.location, "right": query.right,
               "decision_id": decision_id, "reason": decision.reason}
    if not decision.allowed:
        return Answer(403, {"error": {"code": "denied", "message": f"{query.right} is denied at {query.location}",
                                      **summary}}, [("X-Decision-Id", decision_id)], [decision])
    return Answer(200, {"allowed": True, **summary},
                  [("X-Employee-Id", query.employee), ("X-Decision-Id", decision_id)], [decision])


def error_headers(error: SidecarError) -> list[tuple[str, str]]:
    """The headers a refusal carries beyond the edge's: the Bearer challenge of a 401."""
    if isinstance(error, InvalidToken):
        # RFC 6750 3.1: no error code when the request carried no token at all.
        return [("WWW-Authenticate", "Bearer" if error.reason == "missing_token" else 'Bearer error="invalid_token"')]
    return []
