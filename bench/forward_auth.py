"""Forward-auth cost: requests per second through nginx with and without the auth subrequest.

One command: ``.venv/bin/python -m bench.forward_auth [--duration 10] [--warmup 3] [--concurrency 8]``.

Setup, all on 127.0.0.1: ``sidecar serve`` pinned to CPU 1 (:class:`bench.sidecar_server.SidecarServer`,
its private Redis, ``SIDECAR_JWT_SECRET`` set), a directory of one location and one employee
seeded over HTTP with an admin token from ``sidecar token create``, and one nginx (pinned to
CPU 0, shared with wrk) running three servers:

* ``auth``: the ``## nginx`` block of docs/forward-auth.md verbatim (as the e2e tests run it,
  via ``tests.nginx_harness.site_config``): every request first asks ``/v1/forward-auth``;
* ``plain``: the same ``proxy_pass http://app`` without ``auth_request`` (the baseline);
* ``app``: the upstream, ``return 200`` inside nginx, so the upstream costs next to nothing and
  the difference between the two is the auth subrequest.

Each scenario gets a preflight (must answer 200, and the auth one must answer 401 without a
JWT), a warm-up and one wrk run (``GET /locations/l-1/calendar`` with a valid HS256 JWT, an
allowed ``calendar:view``): ``plain``, ``auth`` and ``direct`` (the sidecar alone, Envoy style
``GET /v1/forward-auth/locations/l-1/calendar``). It prints one line per run and the ratio
auth/plain, and writes ``bench/results/forward_auth-<UTC>.json``. Each run also records the CPU
time the sidecar's processes (workers, master, Redis) and nginx's spent per request
(``cpu_us_per_request``, from ``/proc``): on a shared machine that is the steadier measure. Bounded: every wrk run by
``-d`` and ``timeout``, every start by a deadline; processes are stopped by their own pid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt

from bench.localhost import (
    LOOPBACK,
    BenchError,
    cpu_delta,
    free_port,
    request,
    require_loopback,
    stop_pid,
    tree_cpu_seconds,
)
from bench.sidecar_server import SidecarServer, create_token
from bench.wrk import LOADGEN_CPU, run_wrk, warm_up
from tests.nginx_harness import MAIN, find_nginx, port_answers, site_config

RESULTS = Path(__file__).resolve().parent / "results"
NGINX_CPU = LOADGEN_CPU  # 2 CPUs: the sidecar has CPU 1 to itself; nginx and wrk share CPU 0
TARGET = "/locations/l-1/calendar"
SEED = [
    ("/v1/locations/l-1", {"chain": None}),
    ("/v1/employees/e-1", {"active": True}),
    ("/v1/locations/l-1/employees/e-1", {"roles": ["administrator"]}),
]
EXTRA_SERVERS = """
    server {{  # the baseline: the same proxying, no auth subrequest
        listen {host}:{plain_port};
        location / {{ proxy_pass http://app; }}
    }}

    server {{  # the protected application: answered by nginx itself
        listen {host}:{upstream_port};
        location / {{ return 200 "ok\\n"; }}
    }}
"""


def put(url: str, body: Any, token: str) -> int:
    require_loopback(url)
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="PUT",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


class Nginx:
    """``taskset -c NGINX_CPU nginx`` with the auth, plain and app servers; see the module docstring."""

    def __init__(self, workdir: Path, auth_port: int) -> None:
        binary = find_nginx()
        if binary is None:
            raise BenchError("nginx is not installed (apt-get install nginx-light)")
        self.binary, self.workdir = binary, workdir
        self.auth_port = auth_port
        self.port, self.plain_port, self.upstream_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        site = site_config(host=LOOPBACK, port=self.port, auth_port=self.auth_port,
                           upstream_port=self.upstream_port, auth_path="/v1/forward-auth")
        site += EXTRA_SERVERS.format(host=LOOPBACK, plain_port=self.plain_port, upstream_port=self.upstream_port)
        user = "user root;\n" if os.geteuid() == 0 else ""
        text = MAIN.format(user=user, prefix=self.workdir, site=site)
        return text.replace(f"access_log {self.workdir}/access.log;", "access_log off;")

    def __enter__(self) -> Nginx:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        log = self.workdir / "error.log"
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(NGINX_CPU), self.binary, "-c", str(conf), "-p", f"{self.workdir}/", "-e", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not all(port_answers(p) for p in (self.port, self.plain_port, self.upstream_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stop_pid(self.proc)
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise BenchError(f"nginx did not start: {tail}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_pid(self.proc)


def preflight(url: str, jwt_token: str, *, expect_401_without: bool) -> None:
    status, body = request(url, headers={"Authorization": f"Bearer {jwt_token}"})
    if status != 200:
        raise BenchError(f"preflight {url}: HTTP {status} {body[:300]!r}")
    if expect_401_without:
        status, _ = request(url)
        if status != 401:
            raise BenchError(f"preflight {url} without a JWT: HTTP {status}, expected 401")


def run(work: Path, *, duration_s: float, warmup_s: float, concurrency: int, workers: int) -> dict[str, Any]:
    secret = os.urandom(32).hex()
    os.environ["SIDECAR_JWT_SECRET"] = secret  # SidecarServer passes the caller's SIDECAR_* through
    jwt_token = jwt.encode({"sub": "e-1", "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    data_dir = work / "sidecar-data"
    admin = create_token(data_dir, "bench-admin", ("admin",))
    results: dict[str, Any] = {"duration_s": duration_s, "warmup_s": warmup_s, "concurrency": concurrency,
                               "workers": workers, "cpus": os.cpu_count(), "runs": {},
                               "loadavg": {"at_start": list(os.getloadavg())}}
    with SidecarServer(data_dir, workers=workers) as server:
        for path, body in SEED:
            status = put(server.base_url + path, body, admin)
            if status != 200:
                raise BenchError(f"seeding {path}: HTTP {status}")
        with Nginx(work / "nginx", server.port) as nginx:
            urls = {
                "plain": (f"http://{LOOPBACK}:{nginx.plain_port}{TARGET}", False),
                "auth": (f"http://{LOOPBACK}:{nginx.port}{TARGET}", True),
                "direct": (f"{server.base_url}/v1/forward-auth{TARGET}", True),
            }
            for name, (url, protected) in urls.items():
                preflight(url, jwt_token, expect_401_without=protected)
                warm_up(url, body_file=None, seconds=warmup_s, bearer_token=jwt_token)
                assert nginx.proc is not None
                before = {"sidecar": tree_cpu_seconds(server.pid), "nginx": tree_cpu_seconds(nginx.proc.pid)}
                result = run_wrk(url, body_file=None, concurrency=concurrency, duration_s=duration_s,
                                 bearer_token=jwt_token)
                if result["errors"]:
                    raise BenchError(f"{name}: {result['errors']} errors, statuses {result.get('statuses')}")
                # CPU per request of each side (a shared machine's contention inflates req/s, not this)
                served = max(result["requests"], 1)
                result["cpu_us_per_request"] = {
                    side: round(cpu_delta(before[side], tree_cpu_seconds(pid)) * 1e6 / served, 1)
                    for side, pid in (("sidecar", server.pid), ("nginx", nginx.proc.pid))}
                results["runs"][name] = result
                cpu = result["cpu_us_per_request"]
                print(f"{name:>6}: {result['rps']:>9,.0f} req/s  p50 {result['p50_us'] / 1000:.2f} ms  "
                      f"p99 {result['p99_us'] / 1000:.2f} ms  CPU per request: sidecar {cpu['sidecar']:g} µs, "
                      f"nginx {cpu['nginx']:g} µs", flush=True)
        results["sidecar_rss"] = server.rss()
    results["loadavg"]["at_end"] = list(os.getloadavg())
    runs = results["runs"]
    results["ratio_auth_over_plain"] = round(runs["auth"]["rps"] / runs["plain"]["rps"], 4)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forward_auth", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of discarded warm-up per scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the sidecar")
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-forward-auth-"))
    try:
        results = run(work, duration_s=args.duration, warmup_s=args.warmup, concurrency=args.concurrency,
                      workers=args.workers)
    except BenchError as exc:
        print(f"bench.forward_auth: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_tmp:
            shutil.rmtree(work, ignore_errors=True)
    print(f" ratio: auth/plain = {results['ratio_auth_over_plain']:.3f} "
          f"(c={args.concurrency}, {args.duration:g} s per run, sidecar workers={args.workers}; load average "
          f"{results['loadavg']['at_start'][0]:.2f} at start, {results['loadavg']['at_end'][0]:.2f} at end)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"forward_auth-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
