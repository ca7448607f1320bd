"""The ``sidecar`` command: serve, token create|list|revoke, check, policy test, import, audit
verify|archive, seats, migrate legacy-users.

Every command reads the same ``SIDECAR_*`` settings as the server; a bad value is named in a
one-line error and exit status 2, never a traceback. Commands that need Redis build the same
:class:`~sidecar.runtime.Runtime` a worker does (without starting its threads).

Imports: anything (an entry point).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sidecar import logs
from sidecar.api.migration import after_migration
from sidecar.audit import tokens as token_audit
from sidecar.audit.archiver import verify_still
from sidecar.billing_migration import LegacyMigration, read_lines
from sidecar.config import ConfigError, Settings
from sidecar.errors import BadRequest, NotFound, SidecarError
from sidecar.policy.bundle import PolicyBundle, load_bundle
from sidecar.policy.directory import TenantDirectory, check_id
from sidecar.policy.engine import TenantEngine
from sidecar.policy.files import PolicyFileError
from sidecar.policy.seat_preview import compare
from sidecar.policy.seat_transition import render_transition, transition
from sidecar.policy.seats import Scope, SeatCounter, Seats, count_seats
from sidecar.policy.suites import run_suites
from sidecar.policy.tenant import Tenant
from sidecar.runtime import Runtime
from sidecar.server import ServeOptions, serve
from sidecar.startup import bootstrap_token, redis_refusal
from sidecar.store.connection import running_redis_url
from sidecar.store.importer import InvalidImport, import_lines, preview_import
from sidecar.store.redis_server import RedisDirectoryBusy
from sidecar.tokens import SCOPES, TokenError, TokenFile

SERVERS = ("granian", "gunicorn")  # what `sidecar serve --server` runs (sidecar/servers/)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidecar", description="Authorization sidecar for employees and roles.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the HTTP API (granian, or gunicorn)")
    serve.add_argument("--server", choices=SERVERS, default="granian", help="HTTP server (default granian)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8181)
    serve.add_argument("--uds", type=Path, metavar="PATH", help="listen on this Unix socket instead of host:port")
    serve.add_argument("--workers", type=_positive, default=2)
    serve.add_argument("--threads", type=_positive, default=1, help="gunicorn: threads per worker (gthread when > 1)")
    serve.add_argument("--max-connections", type=_positive, default=256,
                       help="granian: connections served at once per worker, each with its own thread (default 256)")

    token = commands.add_parser("token", help="service tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="create a token; prints it once, stores its SHA-256")
    create.add_argument("name")
    create.add_argument("--scope", action="append", required=True, choices=SCOPES)
    token_commands.add_parser("list", help="names and scopes of the tokens (never a secret)")
    revoke = token_commands.add_parser("revoke", help="remove a token; it answers 401 from the next request on")
    revoke.add_argument("name")

    check = commands.add_parser("check", help="decide one right against the directory in Redis")
    check.add_argument("--employee", required=True)
    check.add_argument("--location", required=True)
    check.add_argument("--right", required=True, help="resource:action, e.g. appointment:create")
    check.add_argument("--mfa", action="store_true", help="the session passed two-step authentication")

    policy = commands.add_parser("policy", help="policy files")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    test = policy_commands.add_parser("test", help="run the policy test suites; exit 0 only if all pass")
    test.add_argument("dir", nargs="?", help="suites directory (default: $SIDECAR_POLICY_DIR/tests)")
    policy_commands.add_parser("lint", help="load every policy file and report the first error")

    imp = commands.add_parser("import", help="bulk import a directory from a JSON Lines file")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="validate and print the seat impact; write nothing")

    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="check a log's hash chain; exit 0 and a count if intact")
    audit_commands.add_parser("archive", help="move events past SIDECAR_AUDIT_HOT_S to the PostgreSQL archive now "
                                              "(one pass), then apply retention")
    log = verify.add_mutually_exclusive_group(required=True)
    log.add_argument("--chain")
    log.add_argument("--location")

    seats = commands.add_parser("seats", help="paid and free seats of a chain or a location, as a table")
    where = seats.add_mutually_exclusive_group(required=True)
    where.add_argument("--chain")
    where.add_argument("--location")
    seats.add_argument("--rule", choices=("announced", "writes"), help="default: $SIDECAR_BILLING_RULE")
    seats.add_argument("--explain", action="store_true", help="add each employee's reasons")
    seats.add_argument("--transition", action="store_true",
                       help="paid under the legacy terms (services only) and now, with reasons")

    migrate = commands.add_parser("migrate", help="move legacy users to employees with roles")
    migrate_commands = migrate.add_subparsers(dest="migrate_command", required=True, metavar="WHAT")
    legacy = migrate_commands.add_parser("legacy-users", help="JSON Lines of legacy users; a dry run unless --apply")
    legacy.add_argument("file")
    legacy.add_argument("--apply", action="store_true", help="write each tenant (audited, actor migration)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_format)
        return _run(args, settings)
    except (ConfigError, PolicyFileError) as exc:
        print(f"sidecar: {exc}", file=sys.stderr)
        return 2
    except SidecarError as exc:
        print(f"sidecar: {exc.message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "token":
        return _token(args, settings)
    if args.command == "policy":
        return _policy(args, settings)
    if args.command == "check":
        return _check(args, settings)
    if args.command == "import":
        return _import(args, settings)
    if args.command == "audit" and args.audit_command == "archive":
        return _audit_archive(settings)
    if args.command == "audit":
        return _audit_verify(args, settings)
    if args.command == "seats":
        return _seats(args, settings)
    if args.command == "migrate":
        return _migrate(args, settings)
    raise AssertionError(args.command)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    load_bundle(settings.policy_dir)  # a broken policy file fails the start, naming file and line
    refusal = redis_refusal(settings)
    if refusal is not None:
        print(f"sidecar: {refusal}", file=sys.stderr)
        return 2
    bootstrap_token(settings)
    try:
        serve(settings, ServeOptions(server=args.server, host=args.host, port=args.port, uds=args.uds,
                                     workers=args.workers, threads=args.threads,
                                     max_connections=args.max_connections))
    except RedisDirectoryBusy as exc:
        print(f"sidecar: {exc}", file=sys.stderr)
        return 1
    return 0


def _policy(args: argparse.Namespace, settings: Settings) -> int:
    bundle = load_bundle(settings.policy_dir)
    if args.policy_command == "lint":
        print(f"policies in {bundle.directory}: {len(bundle.catalogue.rights)} rights, "
              f"{len(bundle.templates)} role templates: ok")
        return 0
    results = run_suites(Path(args.dir) if args.dir else settings.policy_dir / "tests", bundle)
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"FAIL {r.suite} (line {r.line}): {json.dumps(r.case)} -> got {r.got}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


@contextmanager
def _runtime(settings: Settings, *, redis_timeout_s: float = 1.0) -> Iterator[Runtime]:
    """The same composition root as a worker's, for one command (no threads started); stopped after."""
    url = running_redis_url(settings)  # never starts a redis-server: that is serve's alone
    runtime = Runtime(settings, url, redis_timeout_s=redis_timeout_s)
    try:
        yield runtime
    finally:
        runtime.stop()


def _check(args: argparse.Namespace, settings: Settings) -> int:
    with _runtime(settings) as runtime:
        decision = runtime.decide(args.employee, args.location, args.right, mfa=args.mfa, explain=True)
    print(json.dumps({"allowed": decision.allowed, "reason": decision.reason,
                      "explanation": decision.explanation}, indent=2))
    return 0 if decision.allowed else 3


def _import(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    with _runtime(settings, redis_timeout_s=30) as runtime:
        rule = settings.billing_rule
        try:
            with open(args.file, encoding="utf-8") as lines:
                if args.dry_run:
                    impact = [_seat_impact(runtime.bundle, rule, before, after)
                              for before, after in preview_import(runtime.directory, runtime.bundle, lines)]
                    print(json.dumps({"dry_run": True, "rule": rule, "seats": impact}))
                    return 0
                summary = import_lines(runtime.directory, runtime.bundle, lines,
                                       progress=lambda m: print(f"sidecar: {m}", file=sys.stderr))
        except InvalidImport as exc:
            print(f"sidecar: {args.file}: {exc}; nothing was written", file=sys.stderr)
            return 1
        # an import moves seats like any write: recorded (cause `import`) for every tenant it touched
        for tenant in summary.pop("touched"):
            engine = TenantEngine(runtime.bundle, runtime.directory.load_tenant(tenant))
            runtime.seat_recorder.record(engine)
    summary["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(summary))
    return 0


def _seat_impact(bundle: PolicyBundle, rule: str, before: TenantDirectory,
                 after: TenantDirectory) -> dict[str, Any]:
    """Paid seats of a tenant's billing scope (its chain, or the standalone location) before and after."""
    scope = Scope(after.tenant.kind, after.tenant.id)
    now = SeatCounter(TenantEngine(bundle, after), rule).count(scope)
    try:
        was = SeatCounter(TenantEngine(bundle, before), rule).count(scope)
    except NotFound:  # a standalone location the import creates
        was = Seats(scope, before.revision, rule, ())
    return {"scope": scope.to_json(), "paid_seats_before": was.paid_seats, "paid_seats_after": now.paid_seats,
            "changed": [c.to_json() for c in compare(was, now)]}


def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Verify one log's hash chain; print the count (exit 0) or the first bad event (exit 1)."""
    with _runtime(settings, redis_timeout_s=30) as runtime:
        if args.chain is not None:
            log_id = Tenant.chain(check_id(args.chain, "chain"))
        else:
            location = check_id(args.location, "location")
            found = runtime.directory.location(location)
            owner = found.chain if found is not None else None
            log_id = Tenant.chain(owner) if owner else Tenant.location(location)
            if owner:
                print(f"location {location} is in chain {owner}: verifying the chain's log")
        verdict = verify_still(runtime.audit_log, runtime.audit_archive, log_id)
    if verdict is None:
        print("sidecar: another process has been archiving for two minutes; try again", file=sys.stderr)
        return 1
    if verdict.intact:
        print(f"{log_id}: intact, {verdict.count} events")
        return 0
    print(f"{log_id}: BROKEN after {verdict.count} good events: event {verdict.event_id} "
          f"(log position {verdict.stream_id}): {verdict.problem}")
    return 1



def _audit_archive(settings: Settings) -> int:
    """One archiving pass by hand: every event past the hot period moves, then retention."""
    if settings.audit_database_url is None:
        print("sidecar: SIDECAR_AUDIT_DATABASE_URL is not set: there is no archive", file=sys.stderr)
        return 2
    with _runtime(settings, redis_timeout_s=30) as runtime:
        assert runtime.archiver is not None
        runtime.archiver.max_batches, runtime.archiver.duty = 2**62, 1.0  # by hand: everything, at full speed
        done = runtime.archiver.run_once(lease_wait_s=120)
    if not done.held_lease:
        print("sidecar: another process has been archiving for two minutes; try again", file=sys.stderr)
        return 1
    print(f"archived {done.moved} events; dropped {len(done.dropped)} partitions"
          + (f" ({', '.join(done.dropped)})" if done.dropped else ""))
    return 0


def _seats(args: argparse.Namespace, settings: Settings) -> int:
    scope = Scope("chain", args.chain) if args.chain else Scope("location", args.location)
    with _runtime(settings) as runtime:
        if scope.kind == "chain":
            engine = runtime.replica.engine(Tenant.chain(scope.id)) if runtime.directory.chain(scope.id) else None
        else:
            engine = runtime.replica.engine_for_location(scope.id)
        if engine is None:
            print(f"sidecar: {scope.kind} {scope.id} does not exist", file=sys.stderr)
            return 1
        rule = args.rule or settings.billing_rule
        if args.transition:
            print(render_transition(transition(SeatCounter(engine, rule), scope)))
        else:
            print(render_table(count_seats(engine, scope, rule), explain=args.explain))
    return 0


def render_table(seats: Seats, *, explain: bool = False) -> str:
    """A readable table of a scope's seats (``sidecar seats``)."""
    rows = [("employee", "seat", *(("reasons",) if explain else ()))]
    rows += [(s.employee, "paid" if s.paid else "free", *((", ".join(s.reasons),) if explain else ()))
             for s in seats.seats]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"{seats.scope.kind} {seats.scope.id}: {seats.paid_seats} paid, {seats.free_seats} free "
                 f"(rule {seats.rule}, revision {seats.revision})")
    return "\n".join(lines)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Print the migration's answer (the API's JSON); exit 1 naming a bad line, nothing written."""
    with _runtime(settings, redis_timeout_s=30) as runtime:
        migration = LegacyMigration(runtime.directory, runtime.bundle, settings.billing_rule)
        try:
            with open(args.file, encoding="utf-8") as lines:
                users = migration.parse(read_lines(lines))
            result = migration.run(users, apply=args.apply, on_applied=lambda write: after_migration(
                write, auditor=runtime.auditor, history=runtime.seat_history, store=runtime.directory,
                bundle=runtime.bundle, rule=settings.billing_rule))
        except OSError as exc:
            print(f"sidecar: {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
        except BadRequest as exc:  # found before anything is written
            print(f"sidecar: {args.file}: {exc.message}; nothing was written", file=sys.stderr)
            return 1
    print(json.dumps(result.to_json()))
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    tokens = TokenFile(settings.tokens_path)
    action_name: str = args.token_command
    try:
        if action_name == "list":
            for known in tokens.all():
                print(f"{known.name}\t{','.join(sorted(known.scopes))}")
            return 0
        if action_name == "revoke":
            scopes = sorted(tokens.revoke(args.name).scopes)
            action = "token:revoke"
            print(f"revoked token {args.name!r}", file=sys.stderr)
        else:
            secret = tokens.create(args.name, args.scope)
            scopes, action = sorted(set(args.scope)), "token:create"
            print(f"created token {args.name!r} with scopes {scopes}; it is shown only once:", file=sys.stderr)
            print(secret)
    except (TokenError, OSError, json.JSONDecodeError) as exc:
        print(f"sidecar: {exc}", file=sys.stderr)
        return 2
    if token_audit.record_from_cli(settings, action, args.name, scopes) is None:
        print("sidecar: no Redis is reachable: this change is not in the audit log "
              "(set SIDECAR_REDIS_URL, or run it while sidecar serve runs)", file=sys.stderr)
    return 0
