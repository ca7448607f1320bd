"""Slow and hostile clients cannot stop decisions for others (REDTEAM.md D1, D12).

Against a real ``sidecar serve`` (granian, the default, 2 workers): while 50 connections trickle
their request (bodies and header sections, one byte at a time) or 20 callers hold checks waiting
for a revision that never comes, a prober makes checks one after another on new connections for a
bounded window. Every probe must be answered, correctly; how fast is for bench/, not asserted.
gunicorn's sync workers do not have this property (README "Slow and hostile clients").
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.served import ServedSidecar

pytestmark = pytest.mark.e2e

WINDOW_S = 4.0  # how long the prober runs while the slow clients hold on
SLOW_CLIENTS = 50


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSidecar]:
    sidecar = ServedSidecar.start(tmp_path_factory.mktemp("slow"), server="granian", workers=2)
    sidecar.admin("PUT", "/v1/locations/s-1", {"chain": None})
    sidecar.admin("PUT", "/v1/employees/s-e", {"active": True})
    sidecar.admin("PUT", "/v1/locations/s-1/employees/s-e", {"roles": ["smm_manager"]})
    yield sidecar
    sidecar.stop()


CHECK = {"employee": "s-e", "location": "s-1", "resource": "review", "action": "manage"}


def probe(served: ServedSidecar, seconds: float) -> tuple[int, list[str]]:
    """Checks one after another for ``seconds``: (answered as expected, what went wrong)."""
    good, bad = 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            status, _, answer = served.call("POST", "/v1/check", CHECK, token=served.token, timeout=5)
            if status == 200 and json.loads(answer)["allowed"] is True:
                good += 1
            else:
                bad.append(f"{status} {answer[:100]!r}")
        except OSError as error:
            bad.append(repr(error))
    return good, bad


class Tricklers:
    """Connections that send a request's first bytes, then one more byte every ``interval_s``."""

    def __init__(self, served: ServedSidecar, head: bytes, count: int, interval_s: float = 0.5) -> None:
        self.sockets = []
        for _ in range(count):
            sock = served.connect(timeout=5)
            sock.sendall(head)
            self.sockets.append(sock)
        self.interval_s = interval_s
        self.stop = threading.Event()
        self.open_at_end = 0
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def _trickle(self) -> None:
        while not self.stop.wait(self.interval_s):
            for sock in self.sockets:
                with contextlib.suppress(OSError):  # a connection the server closed
                    sock.send(b" ")

    def __enter__(self) -> Tricklers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def test_fifty_slow_bodies_do_not_stop_checks(served: ServedSidecar) -> None:
    head = (f"POST /v1/audit/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{").encode()
    with Tricklers(served, head, SLOW_CLIENTS):
        good, bad = probe(served, WINDOW_S)
    assert not bad, bad[:5]
    assert good > 0


def test_fifty_slow_bodies_on_the_decision_route_do_not_stop_checks(served: ServedSidecar) -> None:
    head = (f"POST /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.token}\r\n"
            "Content-Length: 100000\r\n\r\n{").encode()
    with Tricklers(served, head, SLOW_CLIENTS):
        good, bad = probe(served, WINDOW_S)
    assert not bad, bad[:5]
    assert good > 0


def test_fifty_slow_header_sections_do_not_stop_checks(served: ServedSidecar) -> None:
    head = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: a"
    with Tricklers(served, head, SLOW_CLIENTS):
        good, bad = probe(served, WINDOW_S)
    assert not bad, bad[:5]
    assert good > 0


def test_checks_waiting_for_a_future_revision_do_not_starve_the_others(served: ServedSidecar) -> None:
    waiting = {**CHECK, "min_revision": "99999999999999999999-0"}
    stop = threading.Event()
    answers: list[int] = []

    def hold() -> None:
        while not stop.is_set():
            status, _, answer = served.call("POST", "/v1/check", waiting, token=served.token, timeout=10)
            answers.append(status)
            assert status == 503 and json.loads(answer)["error"]["code"] == "revision_not_reached"

    holders = [threading.Thread(target=hold, daemon=True) for _ in range(20)]
    for thread in holders:
        thread.start()
    time.sleep(0.3)  # the holders are waiting in the workers
    try:
        good, bad = probe(served, WINDOW_S)
    finally:
        stop.set()
        for thread in holders:
            thread.join(timeout=15)
    assert not bad, bad[:5]
    assert good > 0
    assert answers and set(answers) == {503}
