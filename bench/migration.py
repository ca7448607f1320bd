"""Migration benchmark (issue 14): a 2,000-employee chain of legacy users, dry run and apply.

``python -m bench.migration [--users 2000] [--locations 50] [--dry-runs 3]``

A private Redis (:class:`RedisServer` in a temporary directory) holds chain ``ch-1`` with
``--locations`` locations and nobody in it. ``--users`` legacy users are generated (seeded):
rights shaped like a role template with up to three rights added or taken away, one or two
location memberships each, 15% with a chain-wide membership, 40% providing services. Then,
through ``sidecar migrate legacy-users``' own code path (``LegacyMigration`` + the audit and
seat-history wiring of ``after_migration``):

1. the dry run (parse, fit, plan, validate, transition report), timed ``--dry-runs`` times,
   each with cold caches (a fresh fit cache: the fit is part of the measure);
2. the apply (one atomic write, an audit event per change, seat history), timed once;
3. the re-run of the apply (nothing differs: nothing written), timed once;
4. outside the timings, a check: a fresh engine over the stored directory answers, for every
   membership, exactly the legacy rights.

The log lines (one JSON line per audited change, as ``sidecar migrate`` prints them) are
written to a file in the temporary directory, inside the timings. Prints one JSON line per
measure; all of it, with the machine, the date and the load average before and after, goes to
``bench/results/migration-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sidecar import logs
from sidecar.api.migration import after_migration
from sidecar.billing_migration import LegacyMigration
from sidecar.config import Settings
from sidecar.policy import migration as fitting
from sidecar.policy.directory import Chain, Location
from sidecar.policy.engine import TenantEngine
from sidecar.policy.tenant import Tenant
from sidecar.runtime import Runtime
from sidecar.store.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def legacy_users(count: int, locations: list[str], templates: dict[str, frozenset[str]],
                 catalogue: list[str], seed: int = 14) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    shapes = [*templates.values(), frozenset()]

    def rights() -> list[str]:
        held = set(rng.choice(shapes))
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            held ^= {rng.choice(catalogue)}
        return sorted(held)

    users = []
    for n in range(count):
        memberships: list[dict[str, Any]] = []
        if rng.random() < 0.15:
            memberships.append({"chain": "ch-1", "rights": rights()})
        for location in rng.sample(locations, rng.randint(1, 2)):
            memberships.append({"location": location, "rights": rights(), "provides_services": rng.random() < 0.4})
        users.append({"id": f"e-{n}", "name": f"Employee {n}", "memberships": memberships})
    return users


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def exact(runtime: Runtime, users: list[dict[str, Any]], locations: list[str]) -> int:
    """Every membership's legacy rights equal the stored directory's effective rights; answers how many."""
    engine = TenantEngine(runtime.bundle, runtime.directory.load_tenant(Tenant.chain("ch-1")))
    checked = 0
    for user in users:
        chain_wide = set().union(*(m["rights"] for m in user["memberships"] if "chain" in m))
        own = {m["location"]: set(m["rights"]) for m in user["memberships"] if "location" in m}
        for location in locations if chain_wide else own:
            legacy = chain_wide | own.get(location, set())
            held = engine.rights(user["id"], location)
            if held != legacy:
                raise SystemExit(f"{user['id']} at {location}: holds {sorted(held)}, legacy {sorted(legacy)}")
            checked += 1
    return checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--locations", type=int, default=50)
    parser.add_argument("--dry-runs", type=int, default=3)
    args = parser.parse_args()
    logs.configure("json")
    report: dict[str, Any] = {"machine": machine(), "loadavg_before": loadavg(), "users": args.users,
                              "locations": args.locations, "measures": []}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            settings = Settings(data_dir=Path(tmp), policy_dir=REPO / "policies", tokens_file=Path(tmp) / "t.json",
                                log_format="json")
            runtime = Runtime(settings, server.url)
            store = runtime.directory
            store.put_chain(Chain("ch-1"))
            locations = [f"l-{i}" for i in range(1, args.locations + 1)]
            for location in locations:
                store.put_location(Location(location, "ch-1"))
            bundle = runtime.bundle
            users = legacy_users(args.users, locations, {n: t.rights for n, t in bundle.templates.items()},
                                 bundle.catalogue.names())
            report["memberships"] = sum(len(u["memberships"]) for u in users)

            def run(apply: bool) -> dict[str, Any]:
                fitting._fit.cache_clear()
                migration = LegacyMigration(store, bundle, settings.billing_rule)
                with open(Path(tmp) / "log.jsonl", "a") as log_lines, contextlib.redirect_stdout(log_lines):
                    started = time.perf_counter()
                    parsed = migration.parse(enumerate(users, start=1))
                    result = migration.run(parsed, apply=apply, on_applied=lambda write: after_migration(
                        write, auditor=runtime.auditor, history=runtime.seat_history, store=store, bundle=bundle,
                        rule=settings.billing_rule))
                    seconds = time.perf_counter() - started
                chain = result.seats[0]
                return {"apply": apply, "seconds": round(seconds, 2),
                        "written": sum(len(w.changes) for w in result.writes),
                        "legacy_paid_seats": chain.legacy_paid_seats, "paid_seats": chain.paid_seats}

            for measure in [*["dry run"] * args.dry_runs, "apply", "apply again (re-run)"]:
                line = {"measure": measure, **run(measure != "dry run"), "loadavg": loadavg()}
                report["measures"].append(line)
                print(json.dumps(line), flush=True)
            report["memberships_checked_exact"] = exact(runtime, users, locations)
            runtime.stop()
        finally:
            server.stop()
    report["loadavg_after"] = loadavg()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"migration-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"checked_exact": report["memberships_checked_exact"], "machine": report["machine"],
                      "loadavg_before": report["loadavg_before"], "loadavg_after": report["loadavg_after"],
                      "written_to": str(out.relative_to(REPO))}))


if __name__ == "__main__":
    main()
