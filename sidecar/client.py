"""A small typed Python client for the sidecar's HTTP API (for upstream services written in Python).

    from sidecar.client import SidecarClient
    sidecar = SidecarClient("http://127.0.0.1:8181", token=os.environ["SIDECAR_TOKEN"])
    if sidecar.check("e-1", "l-1", "appointment", "create").allowed: ...

Connections are pooled (urllib3, thread-safe: share one client per process), every call has a
connect and a read timeout, and a 503 (Redis failing over, a revision not reached yet) is retried
with exponential backoff, honouring ``Retry-After``. Every failure is one of these exceptions:

    SidecarError                   anything this client raises
    ├── TransportError             no answer: connection refused, timeout, broken response
    └── ApiError                   the sidecar answered an error body (.status, .code, .message)
        ├── BadRequest             400 (invalid_id, unknown_right, too_many_checks, ...)
        ├── Unauthorized           401: no or unknown token
        ├── Forbidden              403: the token lacks the scope, or an escalation
        ├── NotFound               404
        ├── Conflict               409
        └── Unavailable            503 after the retries

A deny is not an error: ``check`` answers ``Decision(allowed=False, reason=...)``.
This module imports nothing else of the sidecar: it is installed with the package but stands alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

__all__ = [
    "ApiError",
    "BadRequest",
    "BatchItem",
    "Conflict",
    "Decision",
    "Forbidden",
    "NotFound",
    "SidecarClient",
    "SidecarError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
]


class SidecarError(Exception):
    """Anything this client raises."""


class TransportError(SidecarError):
    """The sidecar did not answer (refused, timed out, or the answer was not HTTP/JSON)."""


class ApiError(SidecarError):
    """The sidecar answered with an error body ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = dict(body or {})


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Unavailable(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                         409: Conflict, 503: Unavailable}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    decision_id: str = ""
    resource: str = ""
    action: str = ""
    location: str = ""
    employee: str = ""
    explanation: dict[str, Any] | None = None


@dataclass(frozen=True)
class BatchItem:
    """One check of a batch; ``location``/``employee`` default to the batch's own."""

    resource: str
    action: str
    location: str | None = None
    employee: str | None = None

    def to_json(self) -> dict[str, str]:
        item = {"resource": self.resource, "action": self.action}
        if self.location is not None:
            item["location"] = self.location
        if self.employee is not None:
            item["employee"] = self.employee
        return item


@dataclass
class SidecarClient:
    """One pooled connection set to one sidecar. ``base_url`` is ``http://host:port``."""

    base_url: str
    token: str
    timeout: float = 2.0
    connect_timeout: float = 0.5
    retries: int = 3
    backoff: float = 0.1
    pool_size: int = 10
    _pool: urllib3.PoolManager = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        retry = urllib3.Retry(total=self.retries, connect=self.retries, read=0, status=self.retries,
                              status_forcelist=(503,), allowed_methods=None, backoff_factor=self.backoff,
                              respect_retry_after_header=True, raise_on_status=False, redirect=0)
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=self.pool_size, retries=retry,
                                         timeout=urllib3.Timeout(connect=self.connect_timeout, read=self.timeout))

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> SidecarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions ------------------------------------------------------------------------------
    def check(self, employee: str, location: str, resource: str, action: str, *,
              context: Mapping[str, Any] | None = None, explain: bool = False,
              min_revision: str | None = None) -> Decision:
        body: dict[str, Any] = {"employee": employee, "location": location, "resource": resource, "action": action}
        if context is not None:
            body["context"] = dict(context)
        if min_revision is not None:
            body["min_revision"] = min_revision
        answer = self._call("POST", "/v1/check", body, query={"explain": "1"} if explain else None)
        return Decision(allowed=answer["allowed"] is True, reason=answer["reason"],
                        decision_id=answer.get("decision_id", ""), resource=resource, action=action,
                        location=location, employee=employee, explanation=answer.get("explanation"))

    def check_many(self, employee: str, location: str, checks: Iterable[BatchItem | tuple[str, str]], *,
                   context: Mapping[str, Any] | None = None) -> list[Decision]:
        """Up to 100 checks in one call, answered in order. Items may name another location or employee."""
        items = [c if isinstance(c, BatchItem) else BatchItem(*c) for c in checks]
        body: dict[str, Any] = {"employee": employee, "location": location,
                                "checks": [item.to_json() for item in items]}
        if context is not None:
            body["context"] = dict(context)
        results = self._call("POST", "/v1/check/batch", body)["results"]
        return [Decision(allowed=r["allowed"] is True, reason=r["reason"], decision_id=r.get("decision_id", ""),
                         resource=r["resource"], action=r["action"], location=r.get("location", location),
                         employee=r.get("employee", employee)) for r in results]

    def rights(self, employee: str, location: str) -> list[str]:
        return list(self._call("GET", f"/v1/locations/{_seg(location)}/employees/{_seg(employee)}/rights")["rights"])

    # -- directory ------------------------------------------------------------------------------
    def put_employee(self, employee: str, *, active: bool = True, email: str | None = None,
                     name: str | None = None, actor: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"active": active}
        if email is not None:
            body["email"] = email
        if name is not None:
            body["name"] = name
        return self._call("PUT", f"/v1/employees/{_seg(employee)}", body, query=_actor(actor))

    def put_chain(self, chain: str, *, owner: str | None = None, actor: str | None = None) -> dict[str, Any]:
        body = {} if owner is None else {"owner": owner}
        return self._call("PUT", f"/v1/chains/{_seg(chain)}", body, query=_actor(actor))

    def put_location(self, location: str, *, chain: str | None = None, owner: str | None = None,
                     actor: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"chain": chain}
        if owner is not None:
            body["owner"] = owner
        return self._call("PUT", f"/v1/locations/{_seg(location)}", body, query=_actor(actor))

    def put_membership(self, employee: str, *, location: str | None = None, chain: str | None = None,
                       roles: Iterable[str] = (), allow: Iterable[str] = (), deny: Iterable[str] = (),
                       provides_services: bool | None = None, actor: str | None = None) -> dict[str, Any]:
        """The membership at a location, or chain-wide with ``chain=`` (replaces the previous one)."""
        body: dict[str, Any] = {"roles": list(roles), "allow": list(allow), "deny": list(deny)}
        if provides_services is not None:
            body["provides_services"] = provides_services
        return self._call("PUT", _membership_path(employee, location, chain), body, query=_actor(actor))

    def delete_membership(self, employee: str, *, location: str | None = None, chain: str | None = None,
                          actor: str | None = None) -> dict[str, Any]:
        return self._call("DELETE", _membership_path(employee, location, chain), query=_actor(actor))

    def put_role(self, role: str, rights: Iterable[str], *, location: str | None = None, chain: str | None = None,
                 inherits: Iterable[str] = (), actor: str | None = None) -> dict[str, Any]:
        path = f"{_scope_path(location, chain)}/roles/{_seg(role)}"
        return self._call("PUT", path, {"rights": list(rights), "inherits": list(inherits)}, query=_actor(actor))

    def employee(self, employee: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/employees/{_seg(employee)}")

    # -- billing --------------------------------------------------------------------------------
    def seats(self, *, location: str | None = None, chain: str | None = None) -> dict[str, Any]:
        return self._call("GET", "/v1/billing/seats", query=_scope_query(location, chain))

    def seats_preview(self, changes: list[dict[str, Any]], *, location: str | None = None,
                      chain: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {**_scope_query(location, chain), "changes": changes}
        return self._call("POST", "/v1/billing/seats/preview", body)

    # -- the one place a request is made --------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._pool.request(method, url, body=data, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError(f"{method} {path}: {exc}") from exc
        try:
            answer = json.loads(response.data) if response.data else {}
        except ValueError as exc:
            raise TransportError(f"{method} {path}: answer is not JSON ({response.status})") from exc
        if response.status >= 400:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            kind = _BY_STATUS.get(response.status, ApiError)
            raise kind(response.status, str(error.get("code", "error")), str(error.get("message", "")), error)
        if not isinstance(answer, dict):  # every answer of the API is a JSON object
            raise TransportError(f"{method} {path}: answer is not a JSON object ({response.status})")
        return answer


def _seg(value: str) -> str:
    return quote(value, safe="")


def _actor(actor: str | None) -> dict[str, str] | None:
    return None if actor is None else {"actor": actor}


def _scope_query(location: str | None, chain: str | None) -> dict[str, str]:
    if (location is None) == (chain is None):
        raise ValueError("name exactly one of location= or chain=")
    return {"location": location} if location is not None else {"chain": chain or ""}


def _scope_path(location: str | None, chain: str | None) -> str:
    scope = _scope_query(location, chain)
    return f"/v1/locations/{_seg(scope['location'])}" if "location" in scope else f"/v1/chains/{_seg(scope['chain'])}"


def _membership_path(employee: str, location: str | None, chain: str | None) -> str:
    return f"{_scope_path(location, chain)}/employees/{_seg(employee)}"
