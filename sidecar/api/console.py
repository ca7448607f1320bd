"""The web console: server-rendered pages of the Security section, seats and effective rights.

    GET  /console/                                       the places of the signed-in employee
    GET  /console/{chains|locations}/{id}/security       events: filters, paging (cursor), CSV link
    GET  /console/{chains|locations}/{id}/security.csv   the same events as CSV (two-step session only)
    GET  /console/{chains|locations}/{id}/seats          paid and free seats with reasons
    GET  /console/locations/{id}/rights[?employee=E]     members, and one employee's effective rights
    POST /console/session                                form field ``token`` (an employee JWT) -> cookie
    POST /console/session/end                            sign out (the cookie is cleared)
    GET  /console/static/{file}                          the stylesheet (no script anywhere)

Flask templates (``sidecar/templates/console``), no build step, no CDN: every asset is served here.

**Who.** An employee JWT, verified with the forward-auth key (``SIDECAR_JWT_SECRET`` /
``SIDECAR_JWT_PUBLIC_KEY``, the runtime's verifier): ``Authorization: Bearer`` when the
platform's proxy adds it, else the ``sidecar_console`` cookie set by ``POST /console/session``
(HttpOnly, SameSite=Strict, Path=/console, Secure over HTTPS or behind a proxy that says
``X-Forwarded-Proto: https``, expiring with the JWT). Without a
valid one every page is a 401 sign-in page with no data. ``amr`` containing ``mfa`` is a
two-step session. Without a configured key every page is 503.

**What.** The rights of the API decide each page, at every location it covers (a chain page:
every location of the chain): ``security_log:read`` for events, ``security_log:export`` (which
requires a two-step session) for the CSV, ``billing:manage`` for seats, ``access:manage`` for
rights. A refusal is a 403 page that shows nothing; every look at the Security section, allowed
or refused, is itself audited, as over the API (details ``via: console``).

**Safety.** Only GET reads; the two POSTs check ``Sec-Fetch-Site`` (else ``Origin``: same
origin only, so no other site can sign a browser in or out) and the cookie is SameSite=Strict,
so no other site can drive a signed-in browser. No token ever appears in a URL (paging and
filter links carry filters and the cursor only). Every answer carries a strict
Content-Security-Policy (``default-src 'none'``, the sidecar's own stylesheet, no script),
``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin``, ``X-Content-Type-Options: nosniff``
and ``Cache-Control: no-store``. Templates are Jinja with autoescaping.

Imports: Flask, the api context and Security-section helpers, policy values, the JWT verifier.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, g, redirect, render_template, request
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

from sidecar.api.context import current_runtime
from sidecar.api.security import chain_section, csv_response, location_section, page, query_from, record_look, refusal
from sidecar.audit.events import CATEGORIES
from sidecar.errors import BadRequest, SidecarError
from sidecar.forward_auth.jwt_auth import Identity, InvalidToken, JwtVerifier
from sidecar.policy.directory import check_id
from sidecar.policy.engine import TenantEngine
from sidecar.policy.seats import Scope, count_seats
from sidecar.policy.tenant import Tenant
from sidecar.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
bp = Blueprint("console", __name__, url_prefix="/console", template_folder=str(ROOT / "templates"),
               static_folder=str(ROOT / "static" / "console"), static_url_path="/static")
COOKIE = "sidecar_console"
PAGE_SIZE = 50
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
EVENT_FILTERS = ("category", "employee", "action", "since", "until", "exclude")


class ConsoleRefusal(Exception):
    """Answered as an HTML page (never JSON, never data): 401 sign-in, 403 refused, 404, 400, 503."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@bp.errorhandler(ConsoleRefusal)
def _refused(error: ConsoleRefusal) -> Response:
    template = "console/signin.html" if error.status == 401 else "console/refused.html"
    response = Response(render_template(template, title=error.title, message=error.message, who=g.get("who")),
                        status=error.status, mimetype="text/html")
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sidecar console"'
    return response


@bp.errorhandler(SidecarError)
def _sidecar_error(error: SidecarError) -> Response:
    """A store or archive outage (503), a bad id: the same page, never a traceback or JSON."""
    status = error.status if 400 <= error.status < 600 else 500
    return _refused(ConsoleRefusal(status, "Cannot show this page", error.message))


@bp.context_processor
def _signed_in() -> dict[str, Any]:
    """Every page's header: who is signed in, by name when the directory has one."""
    return {"who_name": g.get("who_name")}


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"  # never a referrer to another site
    response.headers["Cache-Control"] = "no-store"
    return response


# -- who is asking ----------------------------------------------------------------------------------
def _verifier() -> JwtVerifier:
    verifier = current_runtime().jwt_verifier
    if verifier is None:
        raise ConsoleRefusal(503, "The console is not configured",
                             "Set SIDECAR_JWT_SECRET or SIDECAR_JWT_PUBLIC_KEY: the console knows people by their JWT.")
    return verifier


def _who() -> Identity:
    header = request.headers.get("Authorization")
    token = request.cookies.get(COOKIE)
    if not header and not token:
        raise ConsoleRefusal(401, "Sign in", "Sign in with your employee token to see the console.")
    verifier = _verifier()
    try:
        identity = verifier.verify_authorization(header) if header else verifier.verify(token or "")
    except InvalidToken as exc:
        raise ConsoleRefusal(401, "Sign in", f"Your session is not valid ({exc.reason.replace('_', ' ')}); "
                                             "sign in again.") from None
    g.who = identity
    with contextlib.suppress(SidecarError):  # the header shows the name; Redis away: the id only
        person = current_runtime().directory.employee(identity.employee)
        g.who_name = person.name if person is not None else None
    return identity


def _same_origin() -> None:
    """Refuse a state-changing POST that another site made the browser send.

    Browsers say where a request comes from in ``Sec-Fetch-Site``; older ones only in ``Origin``.
    A request with neither is not a browser's cross-site form (curl, a test client): allowed.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if fetch_site is not None:
        allowed = fetch_site in ("same-origin", "none")  # none: typed or bookmarked by the user
    else:
        allowed = origin is None or origin == request.host_url.rstrip("/")
    if not allowed:
        raise ConsoleRefusal(403, "Refused", "This form may only be sent from the console itself.")


@bp.post("/session")
def sign_in() -> BaseResponse:
    _same_origin()
    token = (request.form.get("token") or "").strip()
    if not token:
        raise ConsoleRefusal(401, "Sign in", "Paste your employee token.")
    try:
        identity = _verifier().verify(token)
    except InvalidToken as exc:
        raise ConsoleRefusal(401, "Sign in", f"That token is not valid ({exc.reason.replace('_', ' ')}).") from None
    response = redirect("/console/", code=303)
    response.set_cookie(COOKIE, token, max_age=max(0, int(identity.expires_at - time.time())), path="/console",
                        httponly=True, samesite="Strict", secure=_https())
    return response


@bp.post("/session/end")
def sign_out() -> BaseResponse:
    _same_origin()
    response = redirect("/console/", code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="Strict", secure=_https())
    return response


def _https() -> bool:
    """Served over HTTPS, here or at the proxy in front (``X-Forwarded-Proto: https``): the cookie is
    ``Secure``. Trusting the header is safe: it can only make the cookie stricter."""
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https"


# -- places --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """A chain or a location, with the locations its pages cover (a chain's: all of them)."""

    kind: str  # chain | location
    id: str
    engine: TenantEngine
    locations: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"/console/{self.kind}s/{self.id}"

    @property
    def scope(self) -> Scope:
        return Scope(self.kind, self.id)


def _place(runtime: Runtime, kind: str, place_id: str) -> Place:
    try:
        check_id(place_id, kind)
    except BadRequest:
        raise ConsoleRefusal(404, "Not found", f"There is no {kind} with that id.") from None
    if kind == "location":
        engine = runtime.replica.engine_for_location(place_id)
        if engine is None:
            raise ConsoleRefusal(404, "Not found", f"There is no location {place_id}.")
        return Place(kind, place_id, engine, (place_id,))
    if runtime.directory.chain(place_id) is None:
        raise ConsoleRefusal(404, "Not found", f"There is no chain {place_id}.")
    engine = runtime.replica.engine(Tenant.chain(place_id))
    return Place(kind, place_id, engine, tuple(sorted(engine.directory.locations)))


def _may(runtime: Runtime, who: Identity, place: Place, right: str) -> str | None:
    """None if the employee holds ``right`` at every location of the place, else why not."""
    return refusal(runtime, who.employee, list(place.locations), right, who.mfa)


def _require(runtime: Runtime, who: Identity, place: Place, right: str) -> None:
    reason = _may(runtime, who, place, right)
    if reason is not None:
        raise ConsoleRefusal(403, "Not allowed", f"You need {right} at {place.kind} {place.id} to see this page "
                                                 f"({reason.replace('_', ' ')}).")


def _name(engine: TenantEngine, employee: str | None) -> str:
    person = engine.directory.employees.get(employee or "")
    return (person.name or person.id) if person is not None else (employee or "")


@bp.get("/")
def home() -> str:
    who = _who()
    runtime = current_runtime()
    places = []
    for tenant in runtime.directory.tenants_of(who.employee):
        try:
            place = _place(runtime, tenant.kind, tenant.id)
        except ConsoleRefusal:
            continue
        entries = [place] if tenant.is_chain else []
        entries += [Place("location", loc, place.engine, (loc,)) for loc in place.locations
                    if place.engine.directory.is_member(who.employee, loc)]
        for entry in entries:
            places.append({"kind": entry.kind, "id": entry.id, "path": entry.path,
                           "security": _may(runtime, who, entry, "security_log:read") is None,
                           "seats": _may(runtime, who, entry, "billing:manage") is None,
                           "rights": entry.kind == "location" and _may(runtime, who, entry, "access:manage") is None})
    return render_template("console/home.html", who=who, places=places)


# -- the Security section ----------------------------------------------------------------------------
def _events_section(kind: str, place_id: str, *, as_csv: bool) -> Any:
    who = _who()
    runtime = current_runtime()
    place = _place(runtime, kind, place_id)
    section = (location_section(runtime, place_id) if kind == "location"
               else chain_section(runtime, place_id))
    right = "security_log:export" if as_csv else "security_log:read"
    why_not = _may(runtime, who, place, right)
    given: MultiDict[str, str] = MultiDict([(k, v) for k, v in request.args.items(multi=True) if v])  # empty fields
    filters = {k: ",".join(given.getlist(k)) for k in EVENT_FILTERS if k in given}
    record_look(runtime, section, who.employee, right, why_not, filters=filters,
                         details={"format": "csv" if as_csv else "html", "via": "console", "mfa": who.mfa})
    if why_not:
        needs = " with a two-step session" if why_not.startswith("mfa_required") else ""
        raise ConsoleRefusal(403, "Not allowed", f"You need {right}{needs} at {kind} {place_id} to see this "
                                                 f"({why_not.replace('_', ' ')}).")
    try:
        query = query_from(given, section.only_location)
    except BadRequest as exc:
        raise ConsoleRefusal(400, "Bad filter", exc.message) from None
    if as_csv:
        return csv_response(runtime, section, query)
    events, next_cursor = page(runtime, section.log_id, query, PAGE_SIZE)
    for event in events:
        event["who"] = event.get("employee_name") or _name(place.engine, event.get("employee"))
    older = f"{place.path}/security?{urlencode({**filters, 'cursor': next_cursor})}" if next_cursor else None
    csv_link = f"{place.path}/security.csv" + (f"?{urlencode(filters)}" if filters else "")
    return render_template("console/security.html", who=who, place=place, events=events, filters=filters,
                           older=older, csv_link=csv_link, categories=CATEGORIES,
                           can_export=_may(runtime, who, place, "security_log:export") is None,
                           first_page=request.args.get("cursor") is None)


@bp.get("/chains/<chain>/security")
def chain_security(chain: str) -> Any:
    return _events_section("chain", chain, as_csv=False)


@bp.get("/locations/<location>/security")
def location_security(location: str) -> Any:
    return _events_section("location", location, as_csv=False)


@bp.get("/chains/<chain>/security.csv")
def chain_security_csv(chain: str) -> Any:
    return _events_section("chain", chain, as_csv=True)


@bp.get("/locations/<location>/security.csv")
def location_security_csv(location: str) -> Any:
    return _events_section("location", location, as_csv=True)


# -- seats and rights -----------------------------------------------------------------------------------
@bp.get("/chains/<chain>/seats")
def chain_seats(chain: str) -> str:
    return _seats("chain", chain)


@bp.get("/locations/<location>/seats")
def location_seats(location: str) -> str:
    return _seats("location", location)


def _seats(kind: str, place_id: str) -> str:
    who = _who()
    runtime = current_runtime()
    place = _place(runtime, kind, place_id)
    _require(runtime, who, place, "billing:manage")
    seats = count_seats(place.engine, place.scope, runtime.settings.billing_rule)
    rows = [{"employee": s.employee, "name": _name(place.engine, s.employee), "paid": s.paid,
             "reasons": list(s.reasons)} for s in seats.seats]
    return render_template("console/seats.html", who=who, place=place, seats=seats, rows=rows)


@bp.get("/locations/<location>/rights")
def location_rights(location: str) -> str:
    place_id = location
    who = _who()
    runtime = current_runtime()
    place = _place(runtime, "location", place_id)
    _require(runtime, who, place, "access:manage")
    directory = place.engine.directory
    members = sorted(e for e in directory.members() if directory.is_member(e, place_id))
    chosen = request.args.get("employee")
    detail = None
    if chosen:
        if chosen not in members:
            raise ConsoleRefusal(404, "Not found", f"{chosen} is not a member of location {place_id}.")
        person = directory.employees.get(chosen)
        active = person is not None and person.active
        held = place.engine.rights(chosen, place_id) if active else frozenset()
        catalogue = place.engine.bundle.catalogue.rights
        grants = [m for m in (directory.memberships.get((chosen, place_id)), directory.chain_memberships.get(chosen))
                  if m is not None]
        detail = {"employee": chosen, "name": _name(place.engine, chosen), "active": active,
                  "roles": [r for m in grants for r in m.roles], "allow": [r for m in grants for r in m.allow],
                  "deny": [r for m in grants for r in m.deny],
                  "rights": [{"right": r, "requires_mfa": catalogue[r].requires_mfa,
                              "critical": catalogue[r].critical, "billing": catalogue[r].billing}
                             for r in sorted(held) if r in catalogue]}
    return render_template("console/rights.html", who=who, place=place, detail=detail,
                           members=[{"id": m, "name": _name(place.engine, m)} for m in members])
