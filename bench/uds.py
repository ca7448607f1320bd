"""The same check over the sidecar's Unix socket and over TCP: ``python -m bench.uds``.

``.venv/bin/python -m bench.uds [--duration 10] [--reps 3] [--concurrency 8]``

Two ``sidecar serve`` (granian, 2 workers) pinned to CPU 1, one on ``--uds``, one on a loopback
port, both reading one private Redis seeded over HTTP (one location, one employee). This
process pins itself to CPU 0 and drives both with the same client (:mod:`bench.socket_load`:
one thread, keep-alive, ``concurrency`` connections), alternating UDS and TCP in each round; wrk
(TCP only) runs once per round on the TCP server as the reference load generator. Prints a
table and writes ``bench/results/uds-<UTC>.json``. Bounded: every run by ``--duration``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.localhost import BenchError, unix_request
from bench.sidecar_server import SidecarServer, create_token
from bench.socket_load import hammer, tcp, unix
from bench.wrk import LOADGEN_CPU, run_wrk
from sidecar.store.redis_server import RedisServer

RESULTS = Path(__file__).resolve().parent / "results"
SEED = [("/v1/locations/u-1", {"chain": None}), ("/v1/employees/u-e", {"active": True}),
        ("/v1/locations/u-1/employees/u-e", {"roles": ["smm_manager"]})]
CHECK = {"employee": "u-e", "location": "u-1", "resource": "review", "action": "manage"}


def check_request(token: str) -> bytes:
    body = json.dumps(CHECK).encode()
    return (f"POST /v1/check HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.uds", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=3)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {LOADGEN_CPU})
    work = Path(tempfile.mkdtemp(prefix="sidecar-uds-"))
    redis = RedisServer(work / "redis").start()
    os.environ["SIDECAR_REDIS_URL"] = redis.url  # both servers (and the CLI) use this one
    rows: list[dict[str, Any]] = []
    try:
        tokens = {name: create_token(work / name) for name in ("tcp", "uds")}
        socket_path = work / "sidecar.sock"
        with SidecarServer(work / "tcp") as over_tcp, SidecarServer(work / "uds", uds=socket_path):
            for path, body in SEED:
                status, answer = unix_request(socket_path, "PUT", path, body=json.dumps(body).encode(),
                                              token=tokens["uds"])
                if status != 200:
                    raise BenchError(f"seeding {path}: {status} {answer[:200]!r}")
            time.sleep(1.5)  # both replicas apply the change log
            clients = {"uds": unix(str(socket_path)), "tcp": tcp(over_tcp.port)}
            for name, connect in clients.items():  # preflight: allowed on both, then a warm-up
                status, answer = unix_request(socket_path, "POST", "/v1/check",
                                              body=json.dumps(CHECK).encode(), token=tokens["uds"])
                if status != 200 or not json.loads(answer)["allowed"]:
                    raise BenchError(f"preflight {name}: {status} {answer[:200]!r}")
                hammer(connect, check_request(tokens[name]), concurrency=args.concurrency, duration_s=args.warmup)
            body_file = work / "check.json"
            body_file.write_text(json.dumps(CHECK))
            for rep in range(1, args.reps + 1):
                for name, connect in clients.items():
                    result = hammer(connect, check_request(tokens[name]), concurrency=args.concurrency,
                                    duration_s=args.duration)
                    rows.append({"listener": name, "client": "python", "rep": rep, **result})
                    print(f"rep {rep} {name} (python client): {result['rps']:,.0f} req/s, "
                          f"p50 {result['p50_us'] / 1000:.2f} ms, p99 {result['p99_us'] / 1000:.2f} ms",
                          file=sys.stderr)
                result = run_wrk(f"{over_tcp.base_url}/v1/check", body_file=body_file, concurrency=args.concurrency,
                                 duration_s=args.duration, bearer_token=tokens["tcp"])
                rows.append({"listener": "tcp", "client": "wrk", "rep": rep, "rps": result["rps"],
                             "p50_us": result["p50_us"], "p99_us": result["p99_us"], "errors": result["errors"]})
                print(f"rep {rep} tcp (wrk): {result['rps']:,.0f} req/s, p99 {result['p99_us'] / 1000:.2f} ms",
                      file=sys.stderr)
    finally:
        redis.stop()
    summary = {}
    for listener, client in (("uds", "python"), ("tcp", "python"), ("tcp", "wrk")):
        picked = [r for r in rows if r["listener"] == listener and r["client"] == client]
        summary[f"{listener}/{client}"] = {k: statistics.median(r[k] for r in picked)
                                           for k in ("rps", "p50_us", "p99_us")}
    print("| listener | client | req/s (median) | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |")
    for key, cell in summary.items():
        listener, client = key.split("/")
        print(f"| {listener} | {client} | {cell['rps']:,.0f} | {cell['p50_us'] / 1000:.2f} "
              f"| {cell['p99_us'] / 1000:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"uds-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"loadavg": Path("/proc/loadavg").read_text().split()[:3], "args": vars(args),
                               "rows": rows, "summary": summary}, indent=1) + "\n")
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
