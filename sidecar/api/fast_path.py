"""The decision fast path: ``POST /v1/check``, ``POST /v1/check/batch`` (scope ``check``) and forward-auth.

These routes are the hot path. :class:`DecisionRoutes` answers them as a thin WSGI layer in
front of Flask (no request context, routing or response objects: a decision costs tens of
microseconds, Flask's machinery would cost more than the decision), through the same edge as
every other route (:mod:`sidecar.api.edge`: token check, error bodies, headers, request id, log
line, metrics) and the same limits (:mod:`sidecar.api.limits`). Forward-auth calls (every method,
no sidecar token, the proxy's JWT instead) are answered by :mod:`sidecar.api.forward_auth` through
the same edge. Everything else passes through to Flask, after the limits.

Imports: the api edge, auth and forward_auth, the runtime, policy values, errors.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog

from sidecar.api import forward_auth, limits
from sidecar.api.auth import authorize
from sidecar.api.edge import (
    INTERNAL_ERROR,
    begin,
    finish,
    method_not_allowed,
    new_id,
    parse_json_object,
    request_id,
    status_line,
    text_field,
)
from sidecar.errors import BadRequest, SidecarError, TooManyChecks
from sidecar.policy.decisions import Decision
from sidecar.policy.directory import check_id
from sidecar.policy.records import CheckRecord
from sidecar.runtime import Runtime

log = structlog.get_logger("sidecar.http")
MAX_BATCH = 100
QueryArgs = dict[str, list[str]]  # the parsed query string


def _context(body: dict[str, Any]) -> dict[str, Any]:
    context = body.get("context")
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise BadRequest("context must be an object", field="context")
    if not isinstance(context.get("mfa", False), bool):
        raise BadRequest("context.mfa must be true or false", field="context.mfa")
    device = context.get("device")
    if device is not None and not isinstance(device, dict):
        raise BadRequest("context.device must be an object", field="context.device")
    return context


_REVISION = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")


def _is_revision(value: object) -> bool:
    return isinstance(value, str) and _REVISION.fullmatch(value) is not None


def _subject(runtime: Runtime, body: dict[str, Any], query: QueryArgs) -> tuple[str, str, dict[str, Any]]:
    employee = check_id(body.get("employee"), "employee")
    location = check_id(body.get("location"), "location")
    context = _context(body)
    min_revision = body.get("min_revision") or next(iter(query.get("min_revision", ())), None)
    if min_revision is not None:
        if not _is_revision(min_revision):
            raise BadRequest("min_revision must be a revision string such as 1764288000000-0", field="min_revision")
        runtime.replica.wait_for(min_revision, runtime.settings.min_revision_wait_s)
    return employee, location, context


def decide_one(runtime: Runtime, raw: bytes, query: QueryArgs, rid: str) -> tuple[dict[str, Any], list[Decision]]:
    body = parse_json_object(raw)
    employee, location, context = _subject(runtime, body, query)
    right = f"{text_field(body, 'resource', 64)}:{text_field(body, 'action', 64)}"
    explain = (query.get("explain") or [""])[0] in ("1", "true")
    decision = runtime.decide(employee, location, right, mfa=context.get("mfa", False), explain=explain)
    answer: dict[str, Any] = {"allowed": decision.allowed, "decision_id": new_id(), "reason": decision.reason}
    if explain:
        answer["explanation"] = decision.explanation or {"roles": [], "overrides": {"allow": [], "deny": []},
                                                          "matched_rule": []}
    runtime.checked(CheckRecord(employee, location, [(decision, answer["decision_id"])], context, rid, "check"))
    return answer, [decision]


def decide_batch(runtime: Runtime, raw: bytes, query: QueryArgs, rid: str) -> tuple[dict[str, Any], list[Decision]]:
    """Up to 100 checks in order. An item may name its own ``location`` and ``employee`` (the
    batch's are the default); its result then names them too. One audit record per pair."""
    body = parse_json_object(raw)
    checks = body.get("checks")
    if not isinstance(checks, list) or not checks:
        raise BadRequest("checks must be a non-empty list of {resource, action}", field="checks")
    if len(checks) > MAX_BATCH:
        raise TooManyChecks(f"at most {MAX_BATCH} checks per batch", limit=MAX_BATCH)
    items: list[tuple[str, str, str | None, str | None]] = []
    for item in checks:
        if not isinstance(item, dict):
            raise BadRequest("each check must be an object {resource, action}", field="checks")
        own_employee, own_location = item.get("employee"), item.get("location")
        items.append((text_field(item, "resource", 64), text_field(item, "action", 64),
                      None if own_employee is None else check_id(own_employee, "checks[].employee"),
                      None if own_location is None else check_id(own_location, "checks[].location")))
    employee, location, context = _subject(runtime, body, query)
    batch_id = new_id()
    asks = [(own_employee or employee, own_location or location, f"{resource}:{action}")
            for resource, action, own_employee, own_location in items]
    decisions = runtime.decide_many(asks, mfa=context.get("mfa", False))
    results: list[dict[str, Any]] = []
    by_subject: dict[tuple[str, str], list[tuple[Decision, str]]] = {}
    for index, ((resource, action, own_employee, own_location), (who, where, _), decision) in enumerate(
            zip(items, asks, decisions, strict=True)):
        by_subject.setdefault((who, where), []).append((decision, f"{batch_id}-{index}"))
        result: dict[str, Any] = {"resource": resource, "action": action, "allowed": decision.allowed,
                                  "reason": decision.reason}
        if own_location is not None:
            result["location"] = where
        if own_employee is not None:
            result["employee"] = who
        results.append(result)
    for (who, where), decided in by_subject.items():
        runtime.checked(CheckRecord(who, where, decided, context, rid, "batch"))
    return {"results": results}, decisions


YIELD_EVERY = 4
_answers = itertools.count(1)


def _now_and_then_let_waiting_requests_run() -> None:
    """Every ``YIELD_EVERY``-th answer, give up the GIL and the CPU (``sched_yield``) before returning it.

    Requests waiting for the GIL are not served in turn: whichever thread runs first when it is
    released takes it, and on a busy core that is seldom the one that has waited longest, so a
    few requests wait behind dozens of others. At c=8 on one core (wrk, 8 s runs): no yield,
    p99 3.1-3.3 ms; a yield every 4th answer, p99 2.0-2.4 ms for 0-10% fewer requests per
    second; after every answer, p99 1.1-1.3 ms but 20-25% fewer (README, "Benchmarks").
    """
    if next(_answers) % YIELD_EVERY == 0:
        os.sched_yield()


Handler = Callable[[Runtime, bytes, QueryArgs, str], tuple[dict[str, Any], list[Decision]]]
HOT_ROUTES: dict[str, Handler] = {"/v1/check": decide_one, "/v1/check/batch": decide_batch}
ALLOWED = ("POST",)


class DecisionRoutes:
    """WSGI middleware answering the decision routes and forward-auth; everything else goes to ``app``.

    Every request first passes :mod:`sidecar.api.limits` (target and header sizes; the body,
    read whole here for the Flask routes too), so both paths refuse the same requests alike.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.forward_auth = forward_auth.ForwardAuthRoutes(runtime.settings)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = environ.get("PATH_INFO", "")
        handler = HOT_ROUTES.get(route)
        if handler is None:
            proxied = self.forward_auth.match(route)
            if proxied is not None:
                return self._forward_auth(environ, start_response, *proxied)
            try:
                limits.check_head(environ)
                limits.buffer_body(environ)
            except SidecarError as error:
                rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
                begin(rid)
                return self._answer(environ, start_response, "unmatched", error.status, error.body(), rid,
                                    time.perf_counter())
            return self.app(environ, start_response)
        started = time.perf_counter()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        begin(rid)
        decisions: list[Decision] = []
        allow: tuple[str, ...] = ()
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                status, answer, allow = 405, method_not_allowed(ALLOWED), ALLOWED
            else:
                limits.check_head(environ)
                self.runtime.maybe_reload_policies()
                authorize(self.runtime.tokens, environ.get("HTTP_AUTHORIZATION"), "check")
                raw = limits.read_body(environ)
                query = parse_qs(environ.get("QUERY_STRING", "")) if environ.get("QUERY_STRING") else {}
                answer, decisions = handler(self.runtime, raw, query, rid)
                status = 200
        except SidecarError as error:
            status, answer = error.status, error.body()
        except Exception as error:  # a failure is a 500 JSON body, never a traceback and never an allow
            log.exception("unhandled_error", error_type=type(error).__name__)
            status, answer = 500, INTERNAL_ERROR
        return self._answer(environ, start_response, route, status, answer, rid, started, decisions, allow)

    def _forward_auth(self, environ: dict[str, Any], start_response: Callable[..., Any], prefix: str,
                      route: str) -> Iterable[bytes]:
        """A forward-auth call: the limits, the method, then :func:`forward_auth.answer`."""
        started = time.perf_counter()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        begin(rid)
        decisions: list[Decision] = []
        allow: tuple[str, ...] = ()
        headers: list[tuple[str, str]] = []
        try:
            limits.check_head(environ)
            limits.read_body(environ)  # not used (Envoy may send the client's); its limits apply as anywhere
            if environ.get("REQUEST_METHOD") not in forward_auth.METHODS:
                status, answer, allow = 405, method_not_allowed(forward_auth.METHODS), forward_auth.METHODS
            else:
                self.runtime.maybe_reload_policies()
                result = forward_auth.answer(self.runtime, environ, prefix, rid)
                status, answer, headers, decisions = result.status, result.body, result.headers, result.decisions
        except SidecarError as error:
            status, answer, headers = error.status, error.body(), forward_auth.error_headers(error)
        except Exception as error:  # a failure is a 500 JSON body, never a traceback and never an allow
            log.exception("unhandled_error", error_type=type(error).__name__)
            status, answer = 500, INTERNAL_ERROR
        return self._answer(environ, start_response, route, status, answer, rid, started, decisions, allow, headers)

    @staticmethod
    def _answer(environ: dict[str, Any], start_response: Callable[..., Any], route: str, status: int,
                answer: dict[str, Any], rid: str, started: float, decisions: Sequence[Decision] = (),
                allow: Sequence[str] = (), extra: Sequence[tuple[str, str]] = ()) -> Iterable[bytes]:
        payload = orjson.dumps(answer)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), ("X-Request-Id", rid),
                   *extra]
        if allow:
            headers.append(("Allow", ", ".join(allow)))
        start_response(status_line(status), headers)
        method = environ.get("REQUEST_METHOD", "")
        finish(method, route, status, time.perf_counter() - started, decisions)
        _now_and_then_let_waiting_requests_run()
        return [] if method == "HEAD" else [payload]  # HEAD: the GET answer's headers, no body
