"""Hostile requests at the HTTP edge, against a real ``sidecar serve`` under each server.

Regression tests for REDTEAM.md D9 (a malformed chunked body was a 500), D13 (HTML or text error
pages from the server and Flask's automatic OPTIONS) and D14 (chunked bodies over 1 MiB were cut
to 1 MiB on the Flask routes instead of refused). Loopback only; each case is one request.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.served import ServedSidecar

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["granian", "gunicorn"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSidecar]:
    sidecar = ServedSidecar.start(tmp_path_factory.mktemp(f"edge-{request.param}"), server=request.param, workers=1)
    yield sidecar
    sidecar.stop()


def exchange(served: ServedSidecar, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the request asks the server to close)."""
    with served.connect() as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", len(body)))
    return int(lines[0].split()[1]), headers, body[:length]


def request(served: ServedSidecar, method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None, chunked: bool = False, token: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {served.token}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    payload = b""
    if body is not None and chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(f"{len(body[i:i + 65536]):x}\r\n".encode() + body[i:i + 65536] + b"\r\n"
                           for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def error_code(status: int, headers: dict[str, str], body: bytes) -> str:
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:200])
    code: str = json.loads(body)["error"]["code"]
    return code


BIG = 2 * 1024 * 1024


@pytest.mark.parametrize("method,path,body", [
    ("PUT", "/v1/employees/e-chunk", b'{"active":true}' + b" " * BIG),
    ("POST", "/v1/audit/events", b'{"category":"x"}' + b" " * BIG),
    ("POST", "/v1/check", b'{"employee":"e"}' + b" " * BIG),
    ("POST", "/v1/check/batch", b'{"employee":"e"}' + b" " * BIG),
])
def test_a_chunked_body_over_1_mib_is_413_on_every_route(served: ServedSidecar, method: str, path: str,
                                                         body: bytes) -> None:
    status, headers, answer = exchange(served, request(served, method, path, body=body, chunked=True))
    assert status == 413 and error_code(status, headers, answer) == "body_too_large"
    if path == "/v1/employees/e-chunk":
        assert served.call("GET", "/v1/employees/e-chunk", token=served.token)[0] == 404, "nothing was stored"


def test_a_body_of_exactly_1_mib_is_read_whole_on_a_flask_route(served: ServedSidecar) -> None:
    body = b'{"active":true}'
    body += b" " * (1024 * 1024 - len(body))
    status, headers, answer = exchange(served, request(served, "PUT", "/v1/employees/e-mib", body=body, chunked=True))
    if served.server == "gunicorn":
        assert status == 200, answer
    else:  # granian cannot tell a malformed chunk from the body's end: chunked bodies are refused
        assert status == 411 and error_code(status, headers, answer) == "length_required"
        assert served.call("GET", "/v1/employees/e-mib", token=served.token)[0] == 404, "nothing was stored"


@pytest.mark.parametrize("path", ["/v1/check", "/v1/check/batch", "/v1/audit/events"])
@pytest.mark.parametrize("chunks", [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n", b"2\r\n{}\r\nzz\r\n\r\n"])
def test_a_malformed_chunked_body_is_400_not_500(served: ServedSidecar, path: str, chunks: bytes) -> None:
    raw = request(served, "POST", path, headers={"Transfer-Encoding": "chunked"}) + chunks
    status, headers, answer = exchange(served, raw)
    code = error_code(status, headers, answer)
    if served.server == "gunicorn":  # gunicorn's chunk errors reach the app, which names them
        assert (status, code) == (400, "invalid_body"), answer
    else:  # granian ends the body silently at a bad chunk, so no chunked body is taken (411)
        assert (status, code) == (411, "length_required"), answer


def test_a_valid_body_before_a_malformed_chunk_is_never_stored(served: ServedSidecar) -> None:
    body = b'{"active":true}'
    chunks = f"{len(body):x}\r\n".encode() + body + b"\r\nzz\r\nxx\r\n0\r\n\r\n"
    raw = request(served, "PUT", "/v1/employees/e-cut", headers={"Transfer-Encoding": "chunked"}) + chunks
    status, headers, answer = exchange(served, raw)
    assert status in (400, 411) and error_code(status, headers, answer) in ("invalid_body", "length_required")
    assert served.call("GET", "/v1/employees/e-cut", token=served.token)[0] == 404, "nothing was stored"


def test_a_body_shorter_than_its_content_length_is_400(served: ServedSidecar) -> None:
    raw = request(served, "POST", "/v1/check", headers={"Content-Length": "100"}) + b'{"employee":"e"}'
    with served.connect(timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)  # the client is done: 16 of 100 bytes
        answer = sock.recv(65536)
    # the server answers 400, or (granian, which sees the connection end) just closes
    assert answer == b"" or answer.split(b" ", 2)[1] == b"400", answer[:200]


@pytest.mark.parametrize("path", ["/v1/roles", "/v1/employees/e-1", "/v1/check", "/livez"])
def test_options_is_a_json_405(served: ServedSidecar, path: str) -> None:
    status, headers, answer = exchange(served, request(served, "OPTIONS", path, token=False))
    assert status == 405 and error_code(status, headers, answer) == "method_not_allowed"


def test_forward_auth_still_takes_options_from_envoy(served: ServedSidecar) -> None:
    status, headers, answer = exchange(served, request(served, "OPTIONS", "/v1/forward-auth/locations/l-1/calendar",
                                                       token=False))
    assert status in (401, 503) and error_code(status, headers, answer) in ("invalid_token", "unavailable")


@pytest.mark.parametrize("header", [
    {"X-Pad": "a" * 9000},
    {"Authorization": "Bearer " + "a" * 100 * 1024},
])
def test_a_header_over_8_kib_is_a_json_431(served: ServedSidecar, header: dict[str, str]) -> None:
    status, headers, answer = exchange(served, request(served, "GET", "/livez", headers=header, token=False))
    assert status == 431 and error_code(status, headers, answer) == "header_too_large"


def test_a_request_target_over_8_kib_is_a_json_4xx(served: ServedSidecar) -> None:
    status, headers, answer = exchange(served, request(served, "GET", "/livez?" + "a" * 9000, token=False))
    assert status in (400, 414) and error_code(status, headers, answer) in ("uri_too_long", "invalid_request")


@pytest.mark.parametrize("raw", [
    b"GET /livez HTTP/1.1\r\nHost: x\r\nX-N: a\x00b\r\nConnection: close\r\n\r\n",
    b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n{}",
    b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n{}",
    b"GET /livez HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n",
    b"GARBAGE\r\n\r\n",
], ids=["nul-in-header", "non-numeric-length", "negative-length", "101-headers", "not-http"])
def test_what_the_http_parser_refuses_is_never_html(served: ServedSidecar, raw: bytes) -> None:
    status, headers, answer = exchange(served, raw)
    assert 400 <= status < 500
    if served.server == "gunicorn":  # its error writer is replaced by the JSON one
        assert error_code(status, headers, answer)
    else:  # granian's parser answers these itself, with the status and no body (README "Slow and hostile clients")
        assert answer == b"" and headers.get("content-length") == "0"
