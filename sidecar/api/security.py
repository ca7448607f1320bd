"""The Security section (scope ``security``): the audit log, read.

``GET /v1/locations/{location}/security-events`` and ``GET /v1/chains/{chain}/security-events``
(scope ``security``): the log newest first, filtered, paged by an opaque cursor (the position
in the log, so new events never shift a page), or ``format=csv`` streamed page by page. The
``viewer`` must hold ``security_log:read`` (``security_log:export`` for CSV) at the location, or
for a chain at every one of its locations; each look, and each refusal, is itself an event.

Imports: Flask, the api edge and auth, :mod:`sidecar.audit` (events and query), the runtime.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, g, request

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import check_ids, matching, reply
from sidecar.audit.archiver import needs_archive
from sidecar.audit.events import ACTION_NAME, CATEGORIES
from sidecar.audit.query import Query, search
from sidecar.errors import BadRequest, Forbidden, NotFound
from sidecar.policy.directory import check_id
from sidecar.policy.tenant import Tenant
from sidecar.policy.times import parse_rfc3339
from sidecar.runtime import Runtime

bp = Blueprint("security", __name__)

MAX_LIMIT, DEFAULT_LIMIT = 500, 100
SCAN_BUDGET = 20_000  # log entries one JSON page may examine; past it the page ends early with a cursor
CSV_ROWS_PER_CHUNK = 500
_CURSOR = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_EVENT_FIELDS = ("id", "time", "location", "chain", "employee", "action", "category", "outcome", "object",
                 "device", "ip", "request_id", "details", "prev_hash", "hash")
MAX_STREAM_PART = 2**64 - 1  # each half of a Redis stream id is an unsigned 64-bit number


# -- the Security section -------------------------------------------------------------------------
@bp.get("/v1/locations/<location>/security-events")
@require_scope("security")
def location_events(location: str) -> Any:
    check_ids(location=location)
    runtime = current_runtime()
    engine = runtime.replica.engine_for_location(location)
    if engine is None:
        raise NotFound(f"location {location} does not exist")
    in_chain = engine.directory.tenant.is_chain
    return _answer(runtime, engine.directory.tenant, [location], location=location,
                   chain=engine.directory.chain.id if in_chain and engine.directory.chain else None,
                   only_location=location if in_chain else None)


@bp.get("/v1/chains/<chain>/security-events")
@require_scope("security")
def chain_events(chain: str) -> Any:
    check_ids(chain=chain)
    runtime = current_runtime()
    if runtime.directory.chain(chain) is None:
        raise NotFound(f"chain {chain} does not exist")
    locations = sorted(runtime.replica.engine(Tenant.chain(chain)).directory.locations)
    return _answer(runtime, Tenant.chain(chain), locations, location=None, chain=chain, only_location=None)


def _answer(runtime: Runtime, log_id: str, locations: list[str], *, location: str | None, chain: str | None,
            only_location: str | None) -> Any:
    args = request.args
    viewer = check_id(args.get("viewer"), "viewer")
    as_csv = args.get("format", "json") == "csv"
    if args.get("format", "json") not in ("json", "csv"):
        raise BadRequest("format must be json or csv", field="format")
    query = _query(only_location)
    limit = _limit()
    right = "security_log:export" if as_csv else "security_log:read"
    mfa = args.get("mfa") in ("1", "true")  # the calling app vouches that the viewer passed two-step
    refusal = _refusal(runtime, viewer, locations, right, mfa)
    runtime.auditor.emit(category="export" if as_csv else "security", action=right,
               outcome="denied" if refusal else "allowed", employee=viewer, location=location, chain=chain,
               request_id=g.get("request_id"),
               details={"filters": {k: v for k, v in args.items() if k not in ("viewer", "format")},
                        "format": "csv" if as_csv else "json", "reason": refusal})
    if refusal:
        raise Forbidden(f"{viewer} may not see this security log: {right} is required", reason=refusal, right=right)
    if as_csv:
        if runtime.audit_archive is not None and needs_archive(runtime.audit_log, log_id):
            runtime.audit_archive.ping()  # 503 archive_unavailable now, not a truncated file later
        rows = _csv(search(runtime.audit_log, log_id, query, scan_budget=None, archive=runtime.audit_archive))
        name = f"security-events-{location or chain}.csv"
        return Response(rows, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})
    events: list[dict[str, Any]] = []
    next_cursor = None
    for event in search(runtime.audit_log, log_id, query, scan_budget=SCAN_BUDGET, archive=runtime.audit_archive,
                        page=limit + 1):
        if event.get("_exhausted"):
            next_cursor = event["_sid"]
            break
        if len(events) == limit:  # one more match exists: the page is full and there is a next one
            next_cursor = events[-1]["_sid"]
            break
        events.append(event)
    return reply({"events": [_public(e) for e in events], "next_cursor": next_cursor})


def _refusal(runtime: Runtime, viewer: str, locations: list[str], right: str, mfa: bool) -> str | None:
    """Why the viewer may not look (None: they may). ``security_log:export`` requires two-step auth."""
    if not locations:
        return "no_locations"
    for place in locations:
        decision = runtime.decide(viewer, place, right, mfa=mfa)
        if not decision.allowed:
            return decision.reason if len(locations) == 1 else f"{decision.reason} at {place}"
    return None


def _query(only_location: str | None) -> Query:
    args = request.args
    category = args.get("category")
    if category is not None and category not in CATEGORIES:
        raise BadRequest(f"category must be one of {', '.join(CATEGORIES)}", field="category")
    employee = args.get("employee")
    if employee is not None:
        check_id(employee, "employee")
    action = args.get("action")
    if action is not None:
        matching(action, ACTION_NAME, "action")
    cursor = args.get("cursor")
    if cursor is not None and not _valid_cursor(cursor):
        raise BadRequest("cursor is not one this API gave out", field="cursor")
    since, since_ms = _instant("since")
    until, _ = _instant("until")
    return Query(category=category, employee=employee, action=action, location=only_location,
                       since=since, until=until, since_ms=since_ms, cursor=cursor)


def _valid_cursor(cursor: str) -> bool:
    """A stream id Redis accepts as an exclusive upper bound: two unsigned 64-bit halves, not 0-0."""
    if not _CURSOR.fullmatch(cursor):
        return False
    ms, seq = (int(part) for part in cursor.split("-"))
    return ms <= MAX_STREAM_PART and seq <= MAX_STREAM_PART and (ms, seq) != (0, 0)


def _instant(name: str) -> tuple[str | None, int | None]:
    raw = request.args.get(name)
    if raw is None:
        return None, None
    text, ms = parse_rfc3339(name, raw)
    return text, max(0, ms)


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return int(raw)


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {name: event.get(name) for name in _EVENT_FIELDS}


# -- CSV --------------------------------------------------------------------------------------------
CSV_COLUMNS = ("id", "time", "location", "chain", "employee", "category", "action", "outcome", "object_type",
               "object_id", "device_id", "device_name", "device_platform", "device_user_agent", "ip",
               "request_id", "details", "prev_hash", "hash")


def _csv(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Rows in chunks; events come from Redis a page at a time, so memory stays flat.

    ``id``, ``time``, ``prev_hash`` and ``hash`` are the sidecar's own (hex, RFC 3339): they skip
    the formula guard, which is most of a row's cost on a large export.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    cell, dumps = _cell, orjson.dumps
    for rows, event in enumerate(events, 1):
        get = event.get
        obj, device = get("object") or {}, get("device") or {}
        details = get("details")
        writer.writerow((
            get("id"), get("time"), cell(get("location")), cell(get("chain")), cell(get("employee")),
            cell(get("category")), cell(get("action")), cell(get("outcome")), cell(obj.get("type")),
            cell(obj.get("id")), cell(device.get("id")), cell(device.get("name")), cell(device.get("platform")),
            cell(device.get("user_agent")), cell(get("ip")), cell(get("request_id")),
            cell(dumps(details).decode()) if details is not None else None, get("prev_hash"), get("hash")))
        if rows % CSV_ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: Any) -> str | None:
    """A spreadsheet must not run a cell as a formula (CSV injection): such text gets a leading '.

    None stays None (the csv module writes it as an empty cell)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text and text[0] in _FORMULA_STARTS else text


_FORMULA_STARTS = "=+-@\t\r"
