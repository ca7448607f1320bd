"""From a forward-auth call to the question for the policy engine (employee, location, right, mfa).

Contract
--------
``build_query(verifier=, routes=, method=, target=, headers=, prefix=) -> ForwardAuthQuery``
does everything of ``GET /v1/forward-auth`` that needs neither Flask nor Redis, in this order:

1. ``verifier`` None (no JWT key configured): :class:`~sidecar.errors.Unavailable` (503).
2. The ``Authorization: Bearer`` JWT: :class:`~sidecar.forward_auth.jwt_auth.InvalidToken`
   (401) when missing or bad. Authentication comes first, so an anonymous caller learns
   nothing about routes.
3. The original request (:func:`~sidecar.forward_auth.paths.original_request`):
   :class:`~sidecar.forward_auth.paths.RequestRejected` (403) for a path trick, a missing or
   ambiguous original request.
4. The route: ``RequestRejected("no_route")`` (403) when none matches.
   A path with dot segments whose literal form (``literal_path``) matches another route, or
   none, is ``dot_segment`` (an upstream that routes the raw path would act on another route).
5. The location: the route's ``{location}`` segment, else the ``X-Location-Id`` header, which
   must appear once (``duplicate_location``: nginx authorises the first copy and may forward
   all of them); ``no_location`` when neither exists, ``invalid_location`` when it is not an id (403 rather
   than the API's usual 400 ``invalid_id``: nginx ``auth_request`` turns any status other than
   2xx/401/403 into a 500, and a deny is what the proxy needs).

The caller then asks the policy engine ``(query.employee, query.location, query.right,
context={"mfa": query.mfa})`` and answers 200 with ``X-Employee-Id`` / ``X-Decision-Id`` or 403.
Pure: no Flask, no Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sidecar.config import DEFAULT_FORWARD_AUTH_PREFIX
from sidecar.errors import Unavailable
from sidecar.forward_auth.jwt_auth import Identity, JwtVerifier
from sidecar.forward_auth.paths import ORIGINAL_REQUEST_HEADERS, OriginalRequest, RequestRejected, original_request
from sidecar.policy.directory import is_valid_id
from sidecar.policy.routes import RouteMatch, RouteTable

LOCATION_HEADER = "x-location-id"
HEADERS = ("authorization", LOCATION_HEADER, *ORIGINAL_REQUEST_HEADERS)  # every header build_query reads


@dataclass(frozen=True)
class ForwardAuthQuery:
    identity: Identity
    request: OriginalRequest
    match: RouteMatch
    location: str
    location_source: str  # "path" | "header"

    @property
    def employee(self) -> str:
        return self.identity.employee

    @property
    def right(self) -> str:
        return self.match.right

    @property
    def mfa(self) -> bool:
        return self.identity.mfa


def _header(headers: Mapping[str, str] | Iterable[tuple[str, str]], wanted: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: str | None = None
    for name, value in items:
        if name.lower() == wanted:
            if found is not None and found != value:
                raise RequestRejected("ambiguous_original_request", f"header {name} given twice")
            found = value
    return found


def _single_header(pairs: list[tuple[str, str]], wanted: str) -> str | None:
    """A header that must appear at most once: a proxy may authorise one copy and forward another.
    A WSGI server joins repeated headers with commas (PEP 3333), so a comma counts as a repeat."""
    values = [value for name, value in pairs if name.lower() == wanted]
    if len(values) > 1 or any("," in value for value in values):
        raise RequestRejected("duplicate_location", f"{wanted} given more than once")
    return values[0] if values else None


def build_query(
    *,
    verifier: JwtVerifier | None,
    routes: RouteTable,
    method: str,
    target: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    prefix: str = DEFAULT_FORWARD_AUTH_PREFIX,
) -> ForwardAuthQuery:
    """See the module docstring. ``target`` is the raw request-target of the call (RAW_URI).

    ``headers`` may be all of the call's headers or only those named in :data:`HEADERS` (the
    others are never read), as long as a repeated header is given as every copy or joined with
    commas (PEP 3333 does the latter).
    """
    if verifier is None:
        raise Unavailable("forward-auth is not configured: set SIDECAR_JWT_SECRET or SIDECAR_JWT_PUBLIC_KEY")
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    identity = verifier.verify_authorization(_header(pairs, "authorization"))
    request = original_request(method, target, pairs, prefix)
    match = routes.match(request.method, request.path)
    if match is None:
        raise RequestRejected("no_route", f"no route for {request.method} {request.path}")
    if request.literal != request.path:  # dot segments: an upstream may route the raw path elsewhere
        raw = routes.match(request.method, request.literal)
        if raw is None or (raw.right, raw.location) != (match.right, match.location):
            raise RequestRejected("dot_segment", "dot segments (. or ..) change which route the path names")
    if match.location is not None:
        location, source = match.location, "path"
    else:
        header = _single_header(pairs, LOCATION_HEADER)
        if header is None or header == "":
            raise RequestRejected("no_location", "the route names no location and X-Location-Id is absent")
        location, source = header, "header"
    if not is_valid_id(location):
        raise RequestRejected("invalid_location", "the location is not an id (1-64 of A-Za-z0-9._-)")
    return ForwardAuthQuery(identity, request, match, location, source)
