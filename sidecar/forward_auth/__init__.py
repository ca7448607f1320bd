"""Forward-auth without a web framework: employee JWTs, the original request, routes.

``jwt_auth`` verifies the employee JWT, ``paths`` finds and normalises the original request
(nginx, Traefik, Envoy), ``routes`` maps (method, path) to a right and a location, ``query``
chains the three into the question for the policy engine. No Flask, no Redis: the blueprint in
``sidecar.api`` calls :func:`build_query` and turns its exceptions (all
:class:`~sidecar.errors.SidecarError`: 401, 403, 503) into JSON answers.
"""

from __future__ import annotations

from sidecar.forward_auth.jwt_auth import Identity, InvalidToken, JwtVerifier, bearer_token, load_verifier
from sidecar.forward_auth.paths import OriginalRequest, RequestRejected, normalize_path, original_request
from sidecar.forward_auth.query import ForwardAuthQuery, build_query
from sidecar.forward_auth.routes import RouteMatch, RouteTable, load_routes
from sidecar.policy.directory import is_valid_id

__all__ = [
    "ForwardAuthQuery",
    "Identity",
    "InvalidToken",
    "JwtVerifier",
    "OriginalRequest",
    "RequestRejected",
    "RouteMatch",
    "RouteTable",
    "bearer_token",
    "build_query",
    "is_valid_id",
    "load_routes",
    "load_verifier",
    "normalize_path",
    "original_request",
]
