"""The Security section (scope ``security``): the audit log, read.

``GET /v1/locations/{location}/security-events`` and ``GET /v1/chains/{chain}/security-events``
(scope ``security``): the log newest first, filtered, paged by an opaque cursor (the position
in the log, so new events never shift a page), or ``format=csv`` streamed page by page. The
``viewer`` must hold ``security_log:read`` (``security_log:export`` for CSV) at the location, or
for a chain at every one of its locations; each look, and each refusal, is itself an event.
Filters: ``category``, ``employee``, ``action``, ``since``, ``until`` and ``exclude`` (actions
left out, e.g. ``exclude=security_log:read``: the viewers' own page views). The helpers
(sections, filters, a page, the CSV) are shared with the web console (:mod:`sidecar.api.console`).

Imports: Flask, the api edge and auth, :mod:`sidecar.audit` (events and query), the runtime.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Blueprint, Response, g, request
from werkzeug.datastructures import MultiDict

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
_EVENT_FIELDS = ("id", "time", "location", "chain", "employee", "employee_name", "action", "category", "outcome",
                 "object", "device", "ip", "request_id", "details", "prev_hash", "hash")
MAX_STREAM_PART = 2**64 - 1
MAX_EXCLUDED = 20  # each half of a Redis stream id is an unsigned 64-bit number


# -- the Security section -------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """Which log a Security-section page reads, and where a viewer needs the right."""

    log_id: str
    locations: list[str]  # the viewer needs the right at every one (a chain: all its locations)
    location: str | None  # where the look is recorded
    chain: str | None
    only_location: str | None  # a location of a chain: the chain's log, filtered to it

    @property
    def name(self) -> str:
        return self.location or self.chain or self.log_id


def location_section(runtime: Runtime, location: str) -> Section:
    """A location's section (404 for an unknown location)."""
    engine = runtime.replica.engine_for_location(location)
    if engine is None:
        raise NotFound(f"location {location} does not exist")
    in_chain = engine.directory.tenant.is_chain
    return Section(engine.directory.tenant, [location], location,
                   engine.directory.chain.id if in_chain and engine.directory.chain else None,
                   location if in_chain else None)


def chain_section(runtime: Runtime, chain: str) -> Section:
    """A chain's section (404 for an unknown chain)."""
    if runtime.directory.chain(chain) is None:
        raise NotFound(f"chain {chain} does not exist")
    locations = sorted(runtime.replica.engine(Tenant.chain(chain)).directory.locations)
    return Section(Tenant.chain(chain), locations, None, chain, None)


@bp.get("/v1/locations/<location>/security-events")
@require_scope("security")
def location_events(location: str) -> Any:
    check_ids(location=location)
    runtime = current_runtime()
    return _answer(runtime, location_section(runtime, location))


@bp.get("/v1/chains/<chain>/security-events")
@require_scope("security")
def chain_events(chain: str) -> Any:
    check_ids(chain=chain)
    runtime = current_runtime()
    return _answer(runtime, chain_section(runtime, chain))


def _answer(runtime: Runtime, section: Section) -> Any:
    args = request.args
    viewer = check_id(args.get("viewer"), "viewer")
    as_csv = args.get("format", "json") == "csv"
    if args.get("format", "json") not in ("json", "csv"):
        raise BadRequest("format must be json or csv", field="format")
    query = query_from(args, section.only_location)
    limit = _limit()
    right = "security_log:export" if as_csv else "security_log:read"
    mfa = args.get("mfa") in ("1", "true")  # the calling app vouches that the viewer passed two-step
    why_not = refusal(runtime, viewer, section.locations, right, mfa)
    record_look(runtime, section, viewer, right, why_not,
                filters={k: v for k, v in args.items() if k not in ("viewer", "format")},
                details={"format": "csv" if as_csv else "json"})
    if why_not:
        raise Forbidden(f"{viewer} may not see this security log: {right} is required", reason=why_not, right=right)
    if as_csv:
        return csv_response(runtime, section, query)
    events, next_cursor = page(runtime, section.log_id, query, limit)
    return reply({"events": events, "next_cursor": next_cursor})


def record_look(runtime: Runtime, section: Section, viewer: str, right: str, why_not: str | None, *,
                filters: dict[str, Any], details: dict[str, Any]) -> None:
    """Each look at a Security section, and each refusal, is itself an event."""
    runtime.auditor.emit(category="export" if right == "security_log:export" else "security", action=right,
                         outcome="denied" if why_not else "allowed", employee=viewer, location=section.location,
                         chain=section.chain, request_id=g.get("request_id"),
                         details={"filters": filters, **details, "reason": why_not})


def page(runtime: Runtime, log_id: str, query: Query, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """One page of matching events, newest first (public fields), and the cursor of the next page."""
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
    return [_public(e) for e in events], next_cursor


def csv_response(runtime: Runtime, section: Section, query: Query) -> Response:
    """Every matching event as a streamed CSV attachment."""
    if runtime.audit_archive is not None and needs_archive(runtime.audit_log, section.log_id):
        runtime.audit_archive.ping()  # 503 archive_unavailable now, not a truncated file later
    rows = _csv(search(runtime.audit_log, section.log_id, query, scan_budget=None, archive=runtime.audit_archive))
    name = f"security-events-{section.name}.csv"
    return Response(rows, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


def refusal(runtime: Runtime, viewer: str, locations: list[str], right: str, mfa: bool) -> str | None:
    """Why the viewer may not look (None: they may). ``security_log:export`` requires two-step auth."""
    if not locations:
        return "no_locations"
    for place in locations:
        decision = runtime.decide(viewer, place, right, mfa=mfa)
        if not decision.allowed:
            return decision.reason if len(locations) == 1 else f"{decision.reason} at {place}"
    return None


def query_from(args: MultiDict[str, str], only_location: str | None) -> Query:
    """The filters of a query string as a Query; 400 naming the bad one.

    ``exclude`` may be given several times (or comma-separated): actions left out, e.g.
    ``exclude=security_log:read`` hides the viewers' own page views.
    """
    category = args.get("category")
    if category is not None and category not in CATEGORIES:
        raise BadRequest(f"category must be one of {', '.join(CATEGORIES)}", field="category")
    employee = args.get("employee")
    if employee is not None:
        check_id(employee, "employee")
    action = args.get("action")
    if action is not None:
        matching(action, ACTION_NAME, "action")
    excluded = sorted({name for raw in args.getlist("exclude") for name in raw.split(",") if name})
    if len(excluded) > MAX_EXCLUDED:
        raise BadRequest(f"exclude may name at most {MAX_EXCLUDED} actions", field="exclude")
    for name in excluded:
        matching(name, ACTION_NAME, "exclude")
    cursor = args.get("cursor")
    if cursor is not None and not _valid_cursor(cursor):
        raise BadRequest("cursor is not one this API gave out", field="cursor")
    since, since_ms = _instant(args, "since")
    until, _ = _instant(args, "until")
    return Query(category=category, employee=employee, action=action, location=only_location,
                 since=since, until=until, since_ms=since_ms, cursor=cursor, exclude=tuple(excluded))


def _valid_cursor(cursor: str) -> bool:
    """A stream id Redis accepts as an exclusive upper bound: two unsigned 64-bit halves, not 0-0."""
    if not _CURSOR.fullmatch(cursor):
        return False
    ms, seq = (int(part) for part in cursor.split("-"))
    return ms <= MAX_STREAM_PART and seq <= MAX_STREAM_PART and (ms, seq) != (0, 0)


def _instant(args: MultiDict[str, str], name: str) -> tuple[str | None, int | None]:
    raw = args.get(name)
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
               "request_id", "details", "prev_hash", "hash",
               "employee_name")  # added last (issue 15): the earlier columns keep their positions


def _csv(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Rows in chunks of ``CSV_ROWS_PER_CHUNK``; events come from the stores a batch at a time, so
    memory stays flat. One writer for both stores: an archived row is formatted as a hot one.

    ``id``, ``time``, ``prev_hash`` and ``hash`` are the sidecar's own (hex, RFC 3339): they skip
    the formula guard. The others take it inline (a call per cell was most of a row's cost):
    a cell is passed as is when it is None or text not starting like a formula.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    cell, dumps, starts, empty = _cell, orjson.dumps, _FORMULA_START_SET, _NO_FIELDS
    rows: list[tuple[Any, ...]] = []
    for event in events:
        get = event.get
        obj, device, details = get("object") or empty, get("device") or empty, get("details")
        guarded = (get("location"), get("chain"), get("employee"), get("category"), get("action"), get("outcome"),
                   obj.get("type"), obj.get("id"), device.get("id"), device.get("name"), device.get("platform"),
                   device.get("user_agent"), get("ip"), get("request_id"),
                   None if details is None else dumps(details).decode())
        name = get("employee_name")
        rows.append((get("id"), get("time"),
                     *[v if v is None or (v.__class__ is str and v[:1] not in starts) else cell(v) for v in guarded],
                     get("prev_hash"), get("hash"),
                     name if name is None or (name.__class__ is str and name[:1] not in starts) else cell(name)))
        if len(rows) == CSV_ROWS_PER_CHUNK:
            writer.writerows(rows)
            rows.clear()
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    writer.writerows(rows)
    yield buffer.getvalue()


def _cell(value: Any) -> str | None:
    """A spreadsheet must not run a cell as a formula (CSV injection): such text gets a leading '.

    None stays None (the csv module writes it as an empty cell)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text and text[0] in _FORMULA_STARTS else text


_FORMULA_STARTS = "=+-@\t\r"
_FORMULA_START_SET = frozenset(_FORMULA_STARTS)  # a set, not a str: "" is not in it
_NO_FIELDS: dict[str, Any] = {}
