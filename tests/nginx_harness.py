"""An nginx in front of an echo upstream, guarded by ``auth_request``: the forward-auth test bed.

Contract
--------
* ``find_nginx()``: the nginx binary (``$PATH``, then ``/usr/sbin/nginx``), or None.
* ``EchoUpstream()``: a threaded ``http.server`` on 127.0.0.1:<free port> that answers every
  method with JSON ``{"method", "path", "employee", "decision", "body_length"}`` (``path`` is
  the raw request-target it received; ``employee``/``decision`` are the ``X-Employee-Id`` /
  ``X-Decision-Id`` headers nginx set) and records each request in ``requests``.
* ``NginxHarness(workdir, auth_port=..., upstream_port=..., auth_path="/v1/forward-auth")``
  writes ``workdir/nginx.conf``: a main context (pid, logs and temp paths all under
  ``workdir``) around the ``## nginx`` block of ``docs/forward-auth.md`` taken verbatim, with
  only ``listen 80``, the two upstream addresses and the ``proxy_pass`` path replaced (each
  must occur exactly once, else ValueError): the documented configuration is what runs. It starts
  ``nginx -c conf -p workdir/ -e error.log`` in the foreground (``daemon off``, master + one
  worker) on 127.0.0.1:<free port>, waits until the port answers, and stops it (SIGTERM, then
  SIGKILL). Every request is first sent to ``http://127.0.0.1:<auth_port><auth_path>`` as a
  body-less HEAD (so nginx can keep the connection: it reuses one after a subrequest only when
  the answer has no body) carrying ``X-Original-Method``, ``X-Original-URI`` (``$request_uri``: raw,
  query included), ``Authorization`` and ``X-Location-Id``; a 2xx lets it through to the
  upstream with ``X-Employee-Id`` / ``X-Decision-Id`` taken from the auth answer (replacing
  whatever the client sent); a 401 or 403 is returned to the client as is; anything else
  (auth server down, 5xx) becomes a 500 (fail closed).
* ``NginxHarness.request(method, target, headers=None, body=None) -> Response``: one HTTP/1.1
  request with ``target`` sent byte for byte.

When run as root, nginx's workers would drop to ``nobody`` and could not reach temp files
under a private (0700) pytest directory, so the config then says ``user root;``.
Used as context managers; nothing here depends on the sidecar.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.conftest import free_port, wait_until

HOST = "127.0.0.1"


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def port_answers(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Seen:
    """One request as a stand-in server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes = field(repr=False, default=b"")
    peer_port: int = 0  # the client's port: one value per connection


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StubServer:
    """A threaded http.server on 127.0.0.1:<free port>; subclasses answer in ``respond``."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                            int(self.client_address[1]))
                with stub._lock:
                    stub.requests.append(seen)
                status, headers, payload = stub.respond(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server((HOST, 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)

    def respond(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EchoUpstream(StubServer):
    """The protected application: echoes what reached it."""

    def respond(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        answer = {
            "method": seen.method,
            "path": seen.path,
            "employee": seen.headers.get("x-employee-id"),
            "decision": seen.headers.get("x-decision-id"),
            "body_length": len(seen.body),
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()


DOCS = Path(__file__).resolve().parent.parent / "docs" / "forward-auth.md"
_DOC_BLOCK = re.compile(r"^## nginx\n.*?^```nginx\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)

MAIN = """\
# Written by tests/nginx_harness.py: the main context, then docs/forward-auth.md's block.
{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

{site}
}}
"""


def documented_site(docs: Path = DOCS) -> str:
    """The ``## nginx`` configuration block of docs/forward-auth.md, verbatim."""
    found = _DOC_BLOCK.search(docs.read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{docs}: no ```nginx block under '## nginx'")
    return found.group("body")


def _substitute(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"the documented nginx block must contain {old!r} exactly once")
    return text.replace(old, new)


def site_config(*, host: str, port: int, auth_port: int, upstream_port: int, auth_path: str) -> str:
    """The documented block with only its addresses changed (listen, the two upstreams, the path)."""
    site = documented_site()
    site = _substitute(site, "listen 80;", f"listen {host}:{port};")
    site = _substitute(site, "server 127.0.0.1:8181;", f"server {host}:{auth_port};")
    site = _substitute(site, "server 127.0.0.1:8080;", f"server {host}:{upstream_port};")
    site = _substitute(site, "proxy_pass http://sidecar/v1/forward-auth;", f"proxy_pass http://sidecar{auth_path};")
    return "\n".join(f"    {line}" if line else "" for line in site.splitlines())


class NginxHarness:
    """nginx with ``auth_request`` to a forward-auth server; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        *,
        auth_port: int,
        upstream_port: int,
        auth_path: str = "/v1/forward-auth",
        nginx: str | None = None,
    ) -> None:
        binary = nginx or find_nginx()
        if binary is None:
            raise FileNotFoundError("no nginx binary on PATH or at /usr/sbin/nginx")
        self.nginx = binary
        self.workdir = workdir.resolve()
        self.auth_port = auth_port
        self.upstream_port = upstream_port
        self.auth_path = auth_path
        self.port = 0
        self.conf = self.workdir / "nginx.conf"
        self.error_log = self.workdir / "error.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def config_text(self) -> str:
        user = "user root;\n" if os.geteuid() == 0 else ""
        site = site_config(
            host=HOST,
            port=self.port,
            auth_port=self.auth_port,
            upstream_port=self.upstream_port,
            auth_path=self.auth_path,
        )
        return MAIN.format(user=user, prefix=self.workdir, site=site)

    def start(self, timeout: float = 10.0, attempts: int = 3) -> NginxHarness:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            self.port = free_port()
            self.conf.write_text(self.config_text())
            if self._launch(timeout):
                return self
            log = self.error_log.read_text(errors="replace") if self.error_log.exists() else ""
            if "Address already in use" not in log or attempt == attempts - 1:
                raise RuntimeError(f"nginx did not start on port {self.port}:\n{log[-4000:]}")
        raise AssertionError("unreachable")

    def _launch(self, timeout: float) -> bool:
        with open(self.workdir / "nginx.stdout", "ab") as output:
            process = subprocess.Popen(
                [self.nginx, "-c", str(self.conf), "-p", f"{self.workdir}/", "-e", str(self.error_log)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: process.poll() is not None or port_answers(self.port), timeout_s=timeout, step_s=0.05)
        if process.poll() is None and port_answers(self.port):
            self._process = process
            return True
        process.kill()
        process.wait()
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> NginxHarness:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 10.0,
    ) -> Response:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            connection.request(method, target, body=body, headers=headers or {})
            answer = connection.getresponse()
            payload = answer.read()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, payload)
        finally:
            connection.close()
