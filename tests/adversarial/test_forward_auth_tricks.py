"""D4, D21: forward-auth must authorise exactly what the upstream will act on.

D21: ``/locations/l-1/clients/export/..`` was authorised as ``GET /locations/l-1/clients``
(RFC 3986 normalisation) while nginx forwards the raw path. D4: with two ``X-Location-Id``
headers the decision used the first and the upstream received both. The nginx half of D4
(the documented block) is tested in ``test_forward_auth_nginx_headers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_forward_auth_api import bearer, call, fa, nginx  # fa is a fixture

__all__ = ["fa"]


def reason(response: Any) -> str:
    return str(response.get_json()["error"].get("reason"))


@pytest.mark.parametrize("uri", [
    "/locations/l-1/clients/export/..",
    "/locations/l-1/clients/export/%2e%2e",
    "/locations/l-1/clients/export/%2E%2E/",
    "/locations/l-1/clients/export/.",
    "/locations/l-1/./calendar",
    "/locations/l-2/../l-1/calendar",
])
def test_a_dot_segment_that_changes_the_route_is_refused(fa, uri: str) -> None:
    response = call(fa, {**bearer("e-1"), **nginx("GET", uri)})
    assert response.status_code == 403
    assert reason(response) == "dot_segment"


def test_the_same_request_without_tricks_is_still_allowed(fa) -> None:
    response = call(fa, {**bearer("e-1"), **nginx("GET", "/locations/l-1/clients")})
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("values", [["l-1", "l-3"], ["l-3", "l-1"], ["l-1", "l-1"]])
def test_a_duplicate_x_location_id_is_refused(fa, values: list[str]) -> None:
    headers = [*bearer("e-1").items(), *nginx("GET", "/reports").items(), *(("X-Location-Id", v) for v in values)]
    response = fa.client.open("/v1/forward-auth", method="GET", headers=headers)
    assert response.status_code == 403
    assert reason(response) == "duplicate_location"
