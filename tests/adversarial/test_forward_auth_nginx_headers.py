"""D4 through nginx, with the documented block: a duplicate ``X-Location-Id`` never splits the
decision from the request (refused, and the upstream is not reached); a single one reaches the
upstream as exactly the authorised value."""

from __future__ import annotations

import http.client

from tests.nginx_harness import EchoUpstream, NginxHarness
from tests.test_forward_auth_e2e import bearer, forget, nginx, sidecar, token, upstream

__all__ = ["forget", "nginx", "sidecar", "upstream"]  # module fixtures of the end-to-end suite
pytestmark = __import__("tests.test_forward_auth_e2e", fromlist=["pytestmark"]).pytestmark


def send(harness: NginxHarness, headers: list[tuple[str, str]]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=10)
    try:
        connection.putrequest("GET", "/reports")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_a_duplicate_location_header_is_refused_before_the_upstream(nginx: NginxHarness,
                                                                    upstream: EchoUpstream) -> None:
    auth = list(bearer(token("mk")).items())
    for values in (["l-1", "l-3"], ["l-3", "l-1"], ["l-1", "l-1"]):
        assert send(nginx, [*auth, *(("X-Location-Id", v) for v in values)]) == 403, values
    assert upstream.requests == []


def test_a_single_location_header_reaches_the_upstream_unchanged(nginx: NginxHarness, upstream: EchoUpstream) -> None:
    assert send(nginx, [*bearer(token("mk")).items(), ("X-Location-Id", "l-1")]) == 200
    [seen] = upstream.requests
    assert seen.headers["x-location-id"] == "l-1"
