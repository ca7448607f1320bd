"""What auditing critical checks costs: check throughput with audit on versus off.

One command: ``.venv/bin/python -m bench.audit_overhead [--checks N] [--rounds R]``. Starts its
own Redis (:class:`sidecar.store.redis_server.RedisServer`, AOF on, as deployed) in a temporary
directory, builds the app in process, seeds one chain, then runs ``POST /v1/check`` through
Flask's test client on a mix where every tenth check is of a critical right (so it appends one
event to Redis synchronously) and the rest are ordinary. "Off" is the same app with the audit
listener unsubscribed from ``runtime.after_check``. Rounds alternate on/off; the best round of
each is reported (the least disturbed by the machine), with the ratio. Log lines go to
/dev/null in both modes; results go to the terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ORDINARY = [("calendar", "view"), ("appointment", "create"), ("client", "view"), ("appointment", "edit")]
CRITICAL = ("client", "delete")


def _seed(client: Any, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for path, body in [("/v1/chains/ch-1", {}), ("/v1/locations/l-1", {"chain": "ch-1"}),
                       ("/v1/employees/e-1", {"active": True}),
                       ("/v1/locations/l-1/employees/e-1", {"roles": ["manager"]})]:
        response = client.put(path, json=body, headers=headers)
        assert response.status_code == 200, (path, response.get_json())


def _bodies(count: int) -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        resource, action = CRITICAL if i % 10 == 9 else ORDINARY[i % len(ORDINARY)]
        bodies.append({"employee": "e-1", "location": "l-1", "resource": resource, "action": action,
                       "context": {"ip": "203.0.113.7", "request_id": f"r-{i}",
                                   "device": {"id": "d-1", "platform": "web"}}})
    return bodies


def _round(client: Any, token: str, bodies: list[dict[str, Any]]) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    for body in bodies:
        response = client.post("/v1/check", json=body, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"check answered {response.status_code}: {response.get_data(as_text=True)}")
    return len(bodies) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000, help="checks per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode (alternating)")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # the app's log lines, for the whole run

    from sidecar import audit
    from sidecar.app import create_app
    from sidecar.config import Settings
    from sidecar.store.redis_server import RedisServer
    from sidecar.tokens import SCOPES, TokenFile

    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            settings = Settings(data_dir=Path(tmp) / "data", policy_dir=REPO / "policies",
                                tokens_file=Path(tmp) / "tokens.json", log_format="json")
            token = TokenFile(settings.tokens_path).create("bench", list(SCOPES))
            app = create_app(settings, redis_url=server.url)
            runtime = app.extensions["sidecar"]
            listener = audit.auditor_for(runtime).after_check
            client = app.test_client()
            _seed(client, token)
            bodies = _bodies(args.checks)
            _round(client, token, bodies[:1000])  # warm the tenant, the script cache, the connection
            results: dict[str, list[float]] = {"on": [], "off": []}
            for _ in range(args.rounds):
                for mode in ("off", "on"):
                    if mode == "off":
                        runtime.after_check.remove(listener)
                    results[mode].append(_round(client, token, bodies))
                    if mode == "off":
                        runtime.after_check.append(listener)
            events = audit.auditor_for(runtime).store.verify("c:ch-1")
            runtime.stop()
        finally:
            server.stop()
    on, off = max(results["on"]), max(results["off"])
    print(f"checks per round: {args.checks} (10% critical: {CRITICAL[0]}:{CRITICAL[1]}), rounds: {args.rounds}",
          file=out)
    print(f"audit off: {off:,.0f} checks/s (rounds: {', '.join(f'{r:,.0f}' for r in results['off'])})", file=out)
    print(f"audit on:  {on:,.0f} checks/s (rounds: {', '.join(f'{r:,.0f}' for r in results['on'])})", file=out)
    print(f"on/off: {on / off:.3f}  (cost {100 * (1 - on / off):.1f}%)", file=out)
    print(f"log after the run: intact={events.intact}, {events.count} events", file=out)
    return 0 if events.intact else 1


if __name__ == "__main__":
    raise SystemExit(main())
