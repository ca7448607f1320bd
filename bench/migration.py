"""Migration benchmark (issue 14): a 2,000-employee chain of legacy users, dry run and apply.

``python -m bench.migration [--users 2000] [--locations 50]``

A private Redis (:class:`RedisServer` in a temporary directory) holds chain ``ch-1`` with
``--locations`` locations and nobody in it. ``--users`` legacy users are generated (seeded):
rights shaped like a role template with up to three rights added or taken away, one or two
location memberships each, 15% with a chain-wide membership, 40% providing services. Then,
through ``sidecar migrate legacy-users``' own code path (``LegacyMigration`` + the audit and
seat-history wiring of ``after_migration``):

1. the dry run (parse, fit, plan, validate, transition report), timed three times;
2. the apply (one atomic write, an audit event per change, seat history), timed once;
3. the re-run of the apply (nothing differs: nothing written), timed once.

Prints one JSON line per measure.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from sidecar.api.migration import after_migration
from sidecar.billing_migration import LegacyMigration
from sidecar.config import Settings
from sidecar.policy.directory import Chain, Location
from sidecar.runtime import Runtime
from sidecar.store.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--locations", type=int, default=50)
    args = parser.parse_args()
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
            auditor, history = runtime.auditor, runtime.seat_history

            def run(apply: bool) -> dict[str, Any]:
                migration = LegacyMigration(store, bundle, settings.billing_rule)
                started = time.perf_counter()
                parsed = migration.parse(enumerate(users, start=1))
                result = migration.run(parsed, apply=apply, on_applied=lambda write: after_migration(
                    write, auditor=auditor, history=history, store=store, bundle=bundle,
                    rule=settings.billing_rule))
                seconds = time.perf_counter() - started
                chain = result.seats[0]
                return {"apply": apply, "seconds": round(seconds, 2), "users": len(users),
                        "memberships": sum(len(u["memberships"]) for u in users),
                        "written": sum(len(w.changes) for w in result.writes),
                        "legacy_paid_seats": chain.legacy_paid_seats, "paid_seats": chain.paid_seats}

            import logging

            logging.disable(logging.INFO)  # the audit log lines of 6,000 events are not the measure
            for measure in ("dry run", "dry run", "dry run", "apply", "apply again (re-run)"):
                print(json.dumps({"measure": measure, **run(measure != "dry run")}), flush=True)
            runtime.stop()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
