"""What one request costs in CPU, in process: the WSGI app called directly, no HTTP server.

One command: ``.venv/bin/python -m bench.request_cost [--requests 5000] [--rounds 3]
[--kinds check,mix_off,mix_on,forward_auth,forward_auth_cold] [--profile KIND]``.

On a shared machine requests per second measure the neighbours as much as the code. This
measures CPU time instead: the app (``sidecar.app.create_app``, its private Redis with AOF and
``appendfsync always``, as ``sidecar serve`` embeds it) answers ``--requests`` requests of each
kind per round, called as a WSGI server would call it (a prepared environ, the body in
``wsgi.input``), and the round's CPU time is read for this process (every thread: the audit
shipper included) and for Redis (``INFO cpu``). Log lines go to a file, as under ``sidecar serve``.

Kinds:

* ``check``: ``POST /v1/check``, an allowed ordinary right (``calendar:view``);
* ``mix_off`` / ``mix_on``: the audit benchmark's mix (every tenth check ``client:delete``, a
  critical right), with the audit listener unsubscribed / subscribed; ``mix_on`` ends each
  round by shipping what the journal holds, so the shipping is in the round's CPU;
* ``forward_auth``: ``GET /v1/forward-auth`` the nginx way (``X-Original-Method`` / ``-URI``),
  one employee's HS256 JWT, as a proxy sends it with every request of a session;
* ``forward_auth_cold``: the same with the verifier's cache emptied before every call (a JWT
  seen for the first time).

It prints the least CPU per request over the rounds (contention only adds to it) and the
median, for the process and for Redis. ``--profile KIND`` runs one more round of that kind
under cProfile and prints the top functions. Under ``valgrind --tool=callgrind`` two runs with
different ``--requests`` give instructions per request by difference (Redis, another process,
is not counted there).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jwt
import orjson
import redis

REPO = Path(__file__).resolve().parent.parent
SECRET = "request-cost-bench-secret-0123456789abcdef"
KINDS = ("check", "mix_off", "mix_on", "forward_auth", "forward_auth_cold")
CRITICAL_EVERY = 10
SEED: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chains/ch-1", {}),
    ("/v1/locations/l-1", {"chain": "ch-1"}),
    ("/v1/employees/e-1", {"active": True}),
    ("/v1/locations/l-1/employees/e-1", {"roles": ["manager"]}),
]
CONTEXT = {"ip": "203.0.113.7", "device": {"id": "d-1", "platform": "web"}}


def environ(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> dict[str, Any]:
    """A WSGI environ as granian hands one on (the body goes in ``wsgi.input`` per call)."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8181", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.errors": sys.stderr, "HTTP_HOST": "127.0.0.1:8181",
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/json"
    for name, value in headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    env["_body"] = body
    return env


class Requests:
    """The prepared requests of each kind, and one call of the app."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        auth = {"Authorization": f"Bearer {token}"}

        def check(resource: str, action: str, n: int) -> dict[str, Any]:
            body = {"employee": "e-1", "location": "l-1", "resource": resource, "action": action,
                    "context": {**CONTEXT, "request_id": f"r-{n}"}}
            return environ("POST", "/v1/check", auth, orjson.dumps(body))

        self.ordinary = check("calendar", "view", 0)
        self.critical = check("client", "delete", 0)
        employee_jwt = jwt.encode({"sub": "e-1", "exp": int(time.time()) + 86400}, SECRET, algorithm="HS256")
        self.forward_auth = environ("GET", "/v1/forward-auth", {
            "Authorization": f"Bearer {employee_jwt}", "X-Original-Method": "GET",
            "X-Original-URI": "/locations/l-1/calendar", "X-Forwarded-For": "203.0.113.7",
            "User-Agent": "bench/1.0", "Connection": "close"})
        self.status = ""

    def _start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status = status

    def call(self, template: dict[str, Any]) -> None:
        env = dict(template)
        env["wsgi.input"] = io.BytesIO(env.pop("_body"))
        chunks: Iterable[bytes] = self.app(env, self._start_response)
        for _ in chunks:
            pass
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if not self.status.startswith(("200", "403")):
            raise SystemExit(f"{env['PATH_INFO']} answered {self.status}")


def redis_cpu_s(client: redis.Redis[bytes]) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def run_round(kind: str, requests: Requests, runtime: Any, count: int, listener: Any) -> Callable[[], None]:
    """The round's work as a function (so cProfile can run the very same thing)."""
    def work() -> None:
        if kind == "check":
            for _ in range(count):
                requests.call(requests.ordinary)
        elif kind in ("mix_off", "mix_on"):
            subscribed = listener in runtime.after_check
            if kind == "mix_off" and subscribed:
                runtime.after_check.remove(listener)
            if kind == "mix_on" and not subscribed:
                runtime.after_check.append(listener)
            for n in range(count):
                requests.call(requests.critical if n % CRITICAL_EVERY == CRITICAL_EVERY - 1 else requests.ordinary)
            if kind == "mix_on":
                runtime.auditor.flush()  # what the journal holds is shipped inside the round
        elif kind == "forward_auth":
            for _ in range(count):
                requests.call(requests.forward_auth)
        elif kind == "forward_auth_cold":
            for _ in range(count):
                runtime.jwt_verifier.clear_cache()
                requests.call(requests.forward_auth)
        else:
            raise SystemExit(f"unknown kind {kind}")
    return work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--profile", choices=KINDS, help="one more round of this kind under cProfile")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    out = sys.stdout

    from sidecar.app import create_app
    from sidecar.audit.listeners import CheckEvents
    from sidecar.config import Settings
    from sidecar.store.redis_server import RedisServer
    from sidecar.tokens import SCOPES, TokenFile

    with tempfile.TemporaryDirectory(prefix="request-cost-") as tmp:
        log_file = open(Path(tmp) / "app.log", "w")  # noqa: SIM115  # the app's log lines, as under serve
        sys.stdout = log_file
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            settings = Settings(data_dir=Path(tmp) / "data", policy_dir=REPO / "policies",
                                tokens_file=Path(tmp) / "tokens.json", log_format="json", jwt_secret=SECRET)
            token = TokenFile(settings.tokens_path).create("bench", list(SCOPES))
            app = create_app(settings, redis_url=server.url)
            runtime = app.extensions["sidecar"]
            listener = next(f for f in runtime.after_check if isinstance(f, CheckEvents))
            client = app.test_client()
            for path, body in SEED:
                response = client.put(path, json=body, headers={"Authorization": f"Bearer {token}"})
                if response.status_code != 200:
                    raise SystemExit(f"seeding {path}: {response.status_code}")
            requests = Requests(app, token)
            probe = redis.Redis(unix_socket_path=str(server.socket))
            for kind in kinds:  # warm-up: tenant loaded, scripts cached, connections open
                run_round(kind, requests, runtime, min(500, args.requests), listener)()
            results: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "redis": [], "wall": []} for k in kinds}
            for _ in range(args.rounds):
                for kind in kinds:
                    work = run_round(kind, requests, runtime, args.requests, listener)
                    redis_before, cpu_before, wall_before = redis_cpu_s(probe), time.process_time(), time.perf_counter()
                    work()
                    wall = time.perf_counter() - wall_before
                    cpu = time.process_time() - cpu_before
                    redis_used = redis_cpu_s(probe) - redis_before
                    results[kind]["cpu"].append(cpu * 1e6 / args.requests)
                    results[kind]["redis"].append(redis_used * 1e6 / args.requests)
                    results[kind]["wall"].append(wall * 1e6 / args.requests)
            profile_text = ""
            if args.profile:
                profiler = cProfile.Profile()
                work = run_round(args.profile, requests, runtime, args.requests, listener)
                profiler.runcall(work)
                text = io.StringIO()
                stats = pstats.Stats(profiler, stream=text)
                stats.sort_stats("tottime").print_stats(25)
                stats.sort_stats("cumulative").print_stats(40)
                if os.environ.get("REQUEST_COST_CALLEES"):
                    stats.print_callees(os.environ["REQUEST_COST_CALLEES"])
                profile_text = text.getvalue()
            verdict = runtime.audit_log.verify("c:ch-1") if "mix_on" in kinds else None
            runtime.stop()
            probe.close()
        finally:
            server.stop()
            sys.stdout = out
            log_file.close()
    load = os.getloadavg()
    print(f"{args.requests} requests per kind per round, {args.rounds} rounds; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    print(f"{'kind':<18} {'process CPU µs/req':>20} {'Redis CPU µs/req':>18} {'total':>8} {'wall µs/req':>12}")
    for kind in kinds:
        r = results[kind]
        best = min(r["cpu"]), min(r["redis"])
        print(f"{kind:<18} {best[0]:>9.1f} (med {statistics.median(r['cpu']):>6.1f}) "
              f"{best[1]:>7.1f} (med {statistics.median(r['redis']):>5.1f}) {best[0] + best[1]:>8.1f} "
              f"{min(r['wall']):>12.1f}")
    if verdict is not None:
        print(f"audit log c:ch-1 after the runs: intact={verdict.intact}, {verdict.count} events")
    if profile_text:
        print(profile_text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
