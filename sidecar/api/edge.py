"""The edge both request pipelines share: request ids, the request log line, JSON in and out, errors.

The Flask routes (the hooks and error handlers in :mod:`sidecar.api`) and the decision fast
path (:mod:`sidecar.api.fast_path`) both answer through here, so a request that fails the same
way gets the same status, error body and headers on either path (``tests/test_edge_parity.py``):

* every answer is JSON with ``Content-Type: application/json``, ``Content-Length`` and the
  request's ``X-Request-Id`` (the caller's when sane, else a fresh one);
* an error body is ``{"error": {"code", "message", ...details}}``; 405 also carries ``Allow``;
* the limits of :mod:`sidecar.api.limits` (target, header line, body) refuse alike;
* one structlog line and the HTTP metrics per answered request.

Imports: Flask (``Response``, ``request``), policy values, errors, metrics, the id shape of
:mod:`sidecar.audit.events`.
"""

from __future__ import annotations

import collections
import random
import re
from collections.abc import Collection, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal, overload

import orjson
import structlog
from flask import Response, request

from sidecar import logs, metrics
from sidecar.api.limits import MAX_BODY
from sidecar.audit.events import as_uuid4_hex
from sidecar.errors import BadRequest, InvalidJson
from sidecar.policy.decisions import Decision
from sidecar.policy.directory import check_id


# -- what every answered request leaves behind ------------------------------------------------
def new_id() -> str:
    """A fresh random id shaped like ``uuid.uuid4().hex``, for request and decision ids.

    From ``random`` (reseeded in every forked child), not ``os.urandom``: ``uuid4`` costs a
    system call that releases the GIL, i.e. a thread switch per id under a threaded server. These
    ids name requests and decisions in logs and answers; nothing relies on their being
    unguessable (audit event ids, which Redis deduplicates, come from ``os.urandom``).
    """
    return as_uuid4_hex(random.getrandbits(128))


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a fresh one."""
    if incoming and len(incoming) <= 128 and incoming.isprintable():
        return incoming
    return new_id()


def begin(rid: str) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid)


def finish(method: str, route: str, status: int, duration_s: float, decisions: Sequence[Decision] = ()) -> None:
    metrics.labelled(metrics.REQUESTS, route, str(status)).inc()
    metrics.labelled(metrics.LATENCY, route).observe(duration_s)
    fields: dict[str, Any] = {"method": method, "route": route, "status": status,
                              "duration_ms": round(duration_s * 1000, 3)}
    if len(decisions) == 1:
        decision = decisions[0]
        metrics.labelled(metrics.DECISIONS, "true" if decision.allowed else "false", decision.reason).inc()
        fields.update(right=decision.right, allowed=decision.allowed, reason=decision.reason)
    elif decisions:
        # One counter update per distinct (allowed, reason), not per decision: a batch of 100
        # would otherwise pay 100 increments.
        for (allowed, reason), count in collections.Counter((d.allowed, d.reason) for d in decisions).items():
            metrics.labelled(metrics.DECISIONS, "true" if allowed else "false", reason).inc(count)
        fields.update(checks=len(decisions), allowed_count=sum(d.allowed for d in decisions))
    logs.info("request", **fields)


# -- error bodies both pipelines answer ----------------------------------------------------------
def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


INTERNAL_ERROR = error_body("internal", "internal error; see the request id in the logs")
TOO_LARGE_MESSAGE = f"bodies are at most {MAX_BODY // (1024 * 1024)} MiB"


def method_not_allowed(allowed: Collection[str]) -> dict[str, Any]:
    return error_body("method_not_allowed", f"this route answers {', '.join(sorted(allowed))} only")


def status_line(status: int) -> str:
    """``"413 Request Entity Too Large"``: the WSGI status line of a code."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


# -- reading requests: JSON bodies, ids, small typed fields (errors are 400s) ---------------------
def json_body() -> dict[str, Any]:
    """The Flask request's body as a JSON object (``limits.buffer_body`` handed it on whole)."""
    return parse_json_object(request.get_data(cache=True))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise InvalidJson("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidJson("the body must be a JSON object")
    return body


def check_ids(**values: str) -> None:
    """Validate path ids: 1-64 chars from [A-Za-z0-9._-], else 400 invalid_id."""
    for name, value in values.items():
        check_id(value, name)


def matching(value: object, pattern: re.Pattern[str], name: str) -> str:
    """``value`` when it is a string that fully matches ``pattern``, else 400 naming the field."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadRequest(f"{name} is required: {pattern.pattern}", field=name)
    return value


def optional_bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false", field=name)
    return value


@overload
def text_field(body: Mapping[str, Any], name: str, limit: int, *, required: Literal[True] = ...,
               printable: bool = ..., empty: bool = ...) -> str: ...
@overload
def text_field(body: Mapping[str, Any], name: str, limit: int, *, required: Literal[False],
               printable: bool = ..., empty: bool = ...) -> str | None: ...
def text_field(body: Mapping[str, Any], name: str, limit: int, *, required: bool = True, printable: bool = False,
               empty: bool = False) -> str | None:
    """A string field of at most ``limit`` characters, else 400 naming it.

    ``required=False``: absent or null is None. ``printable``: no control characters (text that
    reaches a log, a mail or a screen). ``empty``: "" is a value (otherwise refused).
    """
    value = body.get(name)
    if value is None and not required:
        return None
    if (not isinstance(value, str) or len(value) > limit or (not value and not empty)
            or (printable and not value.isprintable())):
        kind = f"{'' if empty else 'non-empty '}{'printable ' if printable else ''}string"
        raise BadRequest(f"{name} must be a {kind} of at most {limit} characters", field=name)
    return value


# -- answering ---------------------------------------------------------------------------------
def reply(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")
