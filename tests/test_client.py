"""sidecar.client against a live `sidecar serve`: decisions, directory writes, seats, errors, retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sidecar.client import (
    BadRequest,
    BatchItem,
    Forbidden,
    NotFound,
    SidecarClient,
    TransportError,
    Unauthorized,
    Unavailable,
)
from tests.live_server import LiveServer, live_server
from tests.nginx_harness import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("client")) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[SidecarClient]:
    with SidecarClient(live.base, live.token) as sidecar:
        yield sidecar


def test_directory_writes_then_decisions(client: SidecarClient) -> None:
    client.put_chain("cl-ch")
    client.put_location("cl-1", chain="cl-ch")
    client.put_location("cl-2", chain="cl-ch")
    client.put_employee("cl-e", name="Ann")
    written = client.put_membership("cl-e", location="cl-1", roles=["administrator"], deny=["client:export"],
                                    provides_services=True)
    assert written["revision"]
    allowed = client.check("cl-e", "cl-1", "appointment", "create", min_revision=written["revision"])
    assert allowed.allowed and allowed.reason == "granted" and allowed.decision_id
    denied = client.check("cl-e", "cl-1", "client", "export")
    assert not denied.allowed and denied.reason == "denied_by_override"
    assert "appointment:create" in client.rights("cl-e", "cl-1")
    assert client.employee("cl-e")["name"] == "Ann"


def test_check_many_answers_in_order(client: SidecarClient) -> None:
    client.put_location("cm-1", chain=None)
    client.put_employee("cm-e")
    client.put_membership("cm-e", location="cm-1", roles=["marketer"])
    results = client.check_many("cm-e", "cm-1", [("appointment", "create"), BatchItem("client", "read")])
    assert [(r.resource, r.action) for r in results] == [("appointment", "create"), ("client", "read")]
    assert results[0].allowed is False
    client.put_location("cm-2", chain=None)
    client.put_membership("cm-e", location="cm-2", roles=["administrator"])
    mixed = client.check_many("cm-e", "cm-1", [("appointment", "create"), BatchItem("appointment", "create", "cm-2")])
    assert [(r.location, r.allowed) for r in mixed] == [("cm-1", False), ("cm-2", True)]


def test_seats_of_a_location(client: SidecarClient) -> None:
    client.put_location("seat-1", chain=None)
    client.put_employee("seat-e")
    client.put_membership("seat-e", location="seat-1", roles=["administrator"])
    seats = client.seats(location="seat-1")
    assert seats["paid_seats"] == 1 and seats["employees"][0]["employee"] == "seat-e"
    with pytest.raises(ValueError):
        client.seats()


def test_errors_are_one_exception_tree(client: SidecarClient, live: LiveServer) -> None:
    with pytest.raises(BadRequest) as bad:
        client.put_employee("bad id!")
    assert bad.value.status == 400 and bad.value.code == "invalid_id"
    with pytest.raises(NotFound):
        client.employee("nobody-here")
    with pytest.raises(Unauthorized):
        SidecarClient(live.base, "sct_not-a-token").check("e", "l", "appointment", "create")
    client.put_location("esc-1", chain=None)
    client.put_employee("esc-e")
    with pytest.raises(Forbidden) as forbidden:
        client.put_membership("esc-e", location="esc-1", roles=["owner"], actor="esc-e")
    assert forbidden.value.code == "escalation"


def test_nothing_listening_is_a_transport_error() -> None:
    with pytest.raises(TransportError):
        SidecarClient(f"http://127.0.0.1:{free_port()}", "t", retries=1, backoff=0).check("e", "l", "a", "b")


class _FlakyThenOk(BaseHTTPRequestHandler):
    """Answers 503 twice, then a decision: what a caller sees while Redis fails over."""

    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls <= 2:
            body, status = b'{"error": {"code": "redis_unavailable", "message": "x"}}', 503
        else:
            body, status = b'{"allowed": true, "decision_id": "d", "reason": "granted"}', 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_503_is_retried_with_backoff_then_raised() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyThenOk)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert SidecarClient(base, "t", retries=3, backoff=0.01).check("e", "l", "a", "b").allowed
        assert _FlakyThenOk.calls == 3
        _FlakyThenOk.calls = 0
        with pytest.raises(Unavailable) as unavailable:
            SidecarClient(base, "t", retries=1, backoff=0.01).check("e", "l", "a", "b")
        assert unavailable.value.code == "redis_unavailable" and _FlakyThenOk.calls == 2
    finally:
        server.shutdown()
        server.server_close()
