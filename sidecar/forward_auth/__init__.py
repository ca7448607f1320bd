"""Forward-auth without a web framework: employee JWTs, the original request, routes.

``jwt_auth`` verifies the employee JWT, ``paths`` finds and normalises the original request
(nginx, Traefik, Envoy), ``sidecar.policy.routes`` maps (method, path) to a right and a location
(``routes.yaml`` is policy data, loaded with the bundle), ``query`` chains the three into the
question for the policy engine. No Flask, no Redis: the blueprint in
``sidecar.api`` calls :func:`build_query` and turns its exceptions (all
:class:`~sidecar.errors.SidecarError`: 401, 403, 503) into JSON answers.
"""

from __future__ import annotations

from sidecar.forward_auth.jwt_auth import Identity, InvalidToken, JwtVerifier, bearer_token, load_verifier
from sidecar.forward_auth.paths import OriginalRequest, RequestRejected, normalize_path, original_request
from sidecar.forward_auth.query import ForwardAuthQuery, build_query
from sidecar.policy.directory import is_valid_id
from sidecar.policy.routes import RouteMatch, RouteTable, load_routes

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
