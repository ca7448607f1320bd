"""REDTEAM D3 measured again: checks answered while Redis hangs (SIGSTOP), with writes in the mix.

``python -m bench.hung_redis [--seconds 10] [--checkers 4] [--writers 2]``

Starts a redis-server of its own on a free loopback port and ``sidecar serve`` (default server,
2 workers) against it, seeds one location, then runs checkers (``POST /v1/check``, a tenant in
memory) and writers (``POST /v1/audit/events``, which look the location's log up in Redis, and
``PUT /v1/employees``) for ``--seconds`` with Redis answering, then for ``--seconds`` with Redis
stopped by SIGSTOP. Prints checks answered, their p99, and the writers' statuses per window.
Bounded: every request has a 5 s timeout; everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from tests.nginx_harness import free_port
from tests.redis_nodes import RedisNode

REPO = Path(__file__).resolve().parent.parent


def call(port: int, method: str, path: str, body: Any, token: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def window(port: int, token: str, seconds: float, checkers: int, writers: int) -> dict[str, Any]:
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    check = {"employee": "e-1", "location": "l-1", "resource": "calendar", "action": "view"}

    def checker() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            status = call(port, "POST", "/v1/check", check, token)
            with lock:
                latencies.append(time.perf_counter() - started)
                statuses[f"check {status}"] += 1

    def writer(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            if n % 2:
                status = call(port, "POST", "/v1/audit/events",
                              {"location": "l-1", "employee": "e-1", "action": "login", "outcome": "success"}, token)
                kind = "audit"
            else:
                status = call(port, "PUT", f"/v1/employees/w-{i}-{n}", {"active": True}, token)
                kind = "write"
            with lock:
                statuses[f"{kind} {status}"] += 1

    threads = [threading.Thread(target=checker) for _ in range(checkers)]
    threads += [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    return {"checks": len(latencies), "check_p99_ms": round(p99 * 1000, 1), "statuses": dict(sorted(statuses.items()))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--checkers", type=int, default=4)
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hung-redis-") as scratch:
        node = RedisNode(Path(scratch) / "redis").start()
        port = free_port()
        env = {**os.environ, "SIDECAR_DATA_DIR": f"{scratch}/data", "SIDECAR_POLICY_DIR": str(REPO / "policies"),
               "SIDECAR_REDIS_URL": node.url, "SIDECAR_LOG_FORMAT": "json"}
        with open(f"{scratch}/out.log", "wb") as out, open(f"{scratch}/err.log", "wb") as err:
            server = subprocess.Popen([sys.executable, "-m", "sidecar", "serve", "--port", str(port)], env=env,
                                      cwd=REPO, stdout=out, stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            token = ""
            while time.monotonic() < deadline and not token:
                time.sleep(0.2)
                lines = Path(f"{scratch}/err.log").read_text().splitlines()
                token = next((x for x in lines if x.startswith("sct_")), "")
            while time.monotonic() < deadline and call(port, "GET", "/readyz", None, token) not in (200, 405):
                time.sleep(0.2)
            for path, body in (("/v1/locations/l-1", {"chain": None}), ("/v1/employees/e-1", {"active": True}),
                               ("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"]})):
                assert call(port, "PUT", path, body, token) == 200, path
            for _ in range(20):  # every worker loads l-1
                call(port, "POST", "/v1/check", {"employee": "e-1", "location": "l-1", "resource": "calendar",
                                                 "action": "view"}, token)
            before = window(port, token, args.seconds, args.checkers, args.writers)
            node.pause()
            try:
                during = window(port, token, args.seconds, args.checkers, args.writers)
            finally:
                node.resume()
            print(json.dumps({"redis_answering": before, "redis_hung": during}, indent=2))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
