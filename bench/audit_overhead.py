"""What auditing critical checks costs: check throughput with audit on versus off.

One command: ``.venv/bin/python -m bench.audit_overhead`` (HTTP mode, the default). The issue's
benchmark: ``POST /v1/check`` throughput on a mix where 10% of the checks are of a critical
right (``client:delete``: one audit event, journaled before the answer and shipped to Redis in
batches) and
90% are ordinary (``calendar:view``), audit on versus off; the budget (issue 10) is a cost under 10%.

HTTP mode runs the real server twice, one after the other, with
:class:`bench.sidecar_server.SidecarServer` (``sidecar serve`` pinned to CPU 1, its private
Redis with AOF on, as deployed):

* **on**: the repo's ``policies/``;
* **off**: a copy of ``policies/`` in a temporary directory where ``client:delete`` is not
  flagged ``critical``: the very same checks and answers, nothing to audit.

Each server gets a fresh data directory, a ``check admin`` token, and a small directory seeded
through the admin API (chain ``ch-1``, location ``l-1``, employee ``e-1`` with the ``manager``
role, which holds every right used). A preflight checks that both bodies are allowed and that
``sidecar_audit_events_total`` in ``/metrics`` goes up by one per critical check when on and
stays put when off. Then wrk (pinned to CPU 0, one thread, bounded by ``-d`` and ``timeout``,
127.0.0.1 only) drives ``bench/mix.lua``: every tenth request is the critical body. A warm-up,
then one measured run per concurrency (8, then 1). After the runs the audit counter must have
grown by one in ten of the checks when on, and not at all when off, and ``sidecar audit
verify`` must find the chain's log intact.

Before measuring it waits (up to 5 minutes) for the 1-minute load average to drop to 0.7 or
below, so other jobs do not skew the numbers, and records the load averages. Results are printed
and written to ``bench/results/audit-<UTC timestamp>.json``. Each run also records the CPU time
the sidecar's processes (workers, master, their Redis) spent per check (``cpu_us_per_check``,
from ``/proc``): on a shared machine requests per second measure the contention as much as the
code, CPU per check much less so; the summary shows the least of the rounds and the cost it
implies when CPU is the limit.

With ``--rounds N`` the pairs run in ABBA order (on, off; off, on; ...) and the summary gives,
beside the best run of each mode, the median over rounds of each round's own on/off ratio: the
two runs of a round are back to back, so that ratio sees far less of the machine's drift (on
this VM the best "off" runs of one session differed by 15%).

``--in-process`` keeps the earlier measurement: its own Redis
(:class:`sidecar.store.redis_server.RedisServer`, AOF on), the app built in process, ``POST
/v1/check`` through Flask's test client, "off" being the same app with the audit listener
unsubscribed from ``runtime.after_check``; rounds alternate on/off and the best of each is
reported. In process a check costs tens of microseconds while a real request through gunicorn
costs hundreds, so that ratio overstates the cost a client sees.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ORDINARY = [("calendar", "view"), ("appointment", "create"), ("client", "view"), ("appointment", "edit")]
CRITICAL = ("client", "delete")
HTTP_ORDINARY = ("calendar", "view")
CRITICAL_EVERY = 10
CONCURRENCIES = (8, 1)
MAX_LOAD = 0.7
LOAD_WAIT_S = 300
MIX_SCRIPT = Path(__file__).with_name("mix.lua")
POST_JSON_SCRIPT = Path(__file__).with_name("post_json.lua")
CONTEXT = {"ip": "203.0.113.7", "device": {"id": "d-1", "platform": "web"}}
AUDIT_METRIC = re.compile(r'^sidecar_audit_events_total\{result="(\w+)"\}\s+([0-9.eE+-]+)$', re.MULTILINE)


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



# --- in process ------------------------------------------------------------------------------


def in_process(args: argparse.Namespace) -> int:
    """The in-process measurement (``--in-process``): Flask's test client, no HTTP server."""
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # the app's log lines, for the whole run

    from sidecar.app import create_app
    from sidecar.audit.listeners import CheckEvents
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
            listener = next(f for f in runtime.after_check if isinstance(f, CheckEvents))
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
            events = runtime.audit_log.verify("c:ch-1")
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



# --- HTTP mode --------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} audit] {message}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def wait_for_quiet(max_load: float = MAX_LOAD, wait_s: float = LOAD_WAIT_S) -> dict[str, Any]:
    """Poll the 1-minute load average until it is at most ``max_load`` (up to ``wait_s``)."""
    start = time.monotonic()
    first = loadavg()
    current = first
    while current[0] > max_load and time.monotonic() - start < wait_s:
        say(f"load average {current[0]:.2f} > {max_load}: waiting ({time.monotonic() - start:.0f} s so far)")
        time.sleep(10)
        current = loadavg()
    if current[0] > max_load:
        say(f"load average still {current[0]:.2f} after {wait_s:.0f} s: measuring anyway (recorded)")
    return {"before_wait": first, "at_start": current, "waited_s": round(time.monotonic() - start, 1),
            "max_load": max_load, "quiet": current[0] <= max_load}


def check_body(resource: str, action: str) -> dict[str, Any]:
    return {"employee": "e-1", "location": "l-1", "resource": resource, "action": action, "context": CONTEXT}


def policies_without_critical(target: Path, right: str) -> Path:
    """A copy of ``policies/`` in ``target`` where ``right`` is not flagged ``critical``."""
    shutil.copytree(REPO / "policies", target)
    catalogue = target / "catalogue.yaml"
    text = catalogue.read_text()
    line = re.compile(rf"^(\s*{re.escape(right)}:\s*\{{)([^}}]*)(\}}.*)$", re.MULTILINE)
    found = line.search(text)
    if found is None:
        raise SystemExit(f"{right} is not in policies/catalogue.yaml")
    flags = [f.strip() for f in found.group(2).split(",") if f.strip() and not f.strip().startswith("critical:")]
    catalogue.write_text(text[: found.start()] + found.group(1) + ", ".join(flags) + found.group(3)
                         + text[found.end():])
    return target


@contextmanager
def policy_dir(directory: Path) -> Iterator[None]:
    """``SIDECAR_POLICY_DIR`` for the sidecar commands started inside (bench.sidecar_server reads it)."""
    before = os.environ.get("SIDECAR_POLICY_DIR")
    os.environ["SIDECAR_POLICY_DIR"] = str(directory)
    try:
        yield
    finally:
        if before is None:
            del os.environ["SIDECAR_POLICY_DIR"]
        else:
            os.environ["SIDECAR_POLICY_DIR"] = before


def audit_counts(base_url: str) -> dict[str, float]:
    from bench.localhost import BenchError, request

    status, raw = request(f"{base_url}/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    return {result: float(value) for result, value in AUDIT_METRIC.findall(raw.decode())}


def audit_total(base_url: str) -> float:
    return sum(audit_counts(base_url).values())


def seed_http(base_url: str, token: str) -> None:
    """The small directory, through the admin API (``PUT``; bench.localhost.request only GETs/POSTs)."""
    from bench.localhost import BenchError, require_loopback

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for path, body in [("/v1/chains/ch-1", {}), ("/v1/locations/l-1", {"chain": "ch-1"}),
                       ("/v1/employees/e-1", {"active": True}),
                       ("/v1/locations/l-1/employees/e-1", {"roles": ["manager"]})]:
        url = f"{base_url}{path}"
        require_loopback(url)
        put = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="PUT")
        try:
            with urllib.request.urlopen(put, timeout=10) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        if status != 200:
            raise BenchError(f"PUT {path} answered {status}: {raw[:300]!r}")


def preflight(base_url: str, token: str, bodies: dict[str, Path], audited: bool) -> dict[str, Any]:
    """Both bodies allowed; the critical one audited (counter +1) when on, not when off."""
    from bench.localhost import BenchError, post_json

    deadline = time.monotonic() + 30
    while True:  # the seeded writes reach the check path within about a second
        status, answer = post_json(f"{base_url}/v1/check", bodies["ordinary"].read_bytes(), token=token)
        if status == 200 and isinstance(answer, dict) and answer.get("allowed") is True:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"ordinary check not allowed: HTTP {status} {answer!r:.300}")
        time.sleep(0.2)
    before = audit_total(base_url)
    status, answer = post_json(f"{base_url}/v1/check", bodies["critical"].read_bytes(), token=token)
    if status != 200 or not isinstance(answer, dict) or answer.get("allowed") is not True:
        raise BenchError(f"critical check not allowed: HTTP {status} {answer!r:.300}")
    added = audit_total(base_url) - before
    if added != (1 if audited else 0):
        raise BenchError(f"one critical check added {added:g} audit events with audit {'on' if audited else 'off'}")
    return {"critical_answer": {k: answer.get(k) for k in ("allowed", "reason")}, "audit_events_added": added}


def run_mix(url: str, *, bodies: dict[str, Path], token: str, concurrency: int, duration_s: float) -> dict[str, Any]:
    """One wrk run of the mix (bench/mix.lua): its RESULT_JSON as a dict."""
    from bench.wrk import run_wrk

    return run_wrk(url, body_file=bodies["ordinary"], concurrency=concurrency, duration_s=duration_s,
                   bearer_token=token, script=MIX_SCRIPT,
                   extra_env={"POST_JSON_LUA": str(POST_JSON_SCRIPT), "CRITICAL_BODY_FILE": str(bodies["critical"]),
                              "CRITICAL_EVERY": str(CRITICAL_EVERY)})


def measure_mode(mode: str, work: Path, policies: Path, bodies: dict[str, Path], args: argparse.Namespace,
                 concurrencies: tuple[int, ...]) -> dict[str, Any]:
    """Start the sidecar with ``policies``, seed, preflight, warm up, run the mix per concurrency."""
    from bench.localhost import BenchError, log_tail
    from bench.sidecar_server import SidecarServer, create_token

    data_dir = work / mode / "data"
    data_dir.mkdir(parents=True)
    with policy_dir(policies):
        token = create_token(data_dir)
        say(f"{mode}: starting the sidecar (policies: {policies})")
        with SidecarServer(data_dir, workers=args.workers, threads=args.threads) as server:
            try:
                return _measure_server(mode, server, data_dir, token, bodies, args, concurrencies)
            except (BenchError, OSError) as err:
                code = server.proc.poll() if server.proc else None
                state = "still running" if code is None else f"exited with {code}"
                raise BenchError(f"{mode}: {err} (sidecar {state}){log_tail(server.log)}") from err


def _measure_server(mode: str, server: Any, data_dir: Path, token: str, bodies: dict[str, Path],
                    args: argparse.Namespace, concurrencies: tuple[int, ...]) -> dict[str, Any]:
    """Seed, preflight, warm up and run the mix per concurrency against a running sidecar."""
    from bench.localhost import BenchError, cpu_delta, tree_cpu_seconds
    from bench.sidecar_server import run_cli

    audited = mode == "on"
    seed_http(server.base_url, token)
    check = preflight(server.base_url, token, bodies, audited)
    url = f"{server.base_url}/v1/check"
    if args.warmup > 0:
        say(f"{mode}: warm-up {args.warmup:g} s at concurrency 8")
        run_mix(url, bodies=bodies, token=token, concurrency=8, duration_s=args.warmup)
    runs = {}
    for concurrency in concurrencies:
        before = audit_total(server.base_url)
        cpu_before = tree_cpu_seconds(server.pid)
        say(f"{mode}: measuring {args.duration:g} s at concurrency {concurrency}")
        run = run_mix(url, bodies=bodies, token=token, concurrency=concurrency, duration_s=args.duration)
        # CPU the sidecar's processes (workers and their Redis) spent per check: what a check costs
        # whatever else runs on the machine (requests/s on a shared VM measure the contention too)
        cpu_after = tree_cpu_seconds(server.pid)
        run["cpu_us_per_check"] = round(cpu_delta(cpu_before, cpu_after) * 1e6 / max(run["requests"], 1), 1)
        run["cpu_us_per_check_by_process"] = {  # which process spends it (workers, master, redis-server)
            name: round((value - cpu_before.get(name, 0.0)) * 1e6 / max(run["requests"], 1), 1)
            for name, value in cpu_after.items()}
        added = audit_total(server.base_url) - before
        # wrk's -d stop may cut a request short; allow a few in flight either way
        expected = run["requests"] / CRITICAL_EVERY if audited else 0
        run["audit_events_added"] = added
        if run["errors"]:
            raise BenchError(f"{mode} c={concurrency}: {run['errors']} errors: {run}")
        if abs(added - expected) > concurrency + 2:
            raise BenchError(f"{mode} c={concurrency}: {added:g} audit events for {run['requests']} checks")
        say(f"{mode} c={concurrency}: {run['rps']:,.0f} checks/s, p50 {run['p50_us']} µs, "
            f"p99 {run['p99_us']} µs, {added:g} audit events, {run['cpu_us_per_check']:g} µs CPU per check "
            f"({', '.join(f'{k} {v:g}' for k, v in run['cpu_us_per_check_by_process'].items())})")
        runs[str(concurrency)] = run
    # the log the critical checks appended to must still verify (exit 1 raises BenchError)
    verify = run_cli(data_dir, ["audit", "verify", "--chain", "ch-1"]).strip() if audited else None
    return {"preflight": check, "ready_s": server.ready_s, "rss": server.rss(),
            "audit_counts": audit_counts(server.base_url), "audit_verify": verify, "runs": runs}


def http_mode(args: argparse.Namespace) -> int:
    from bench.localhost import BenchError
    from bench.run_all import machine

    started = time.gmtime()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", started)
    concurrencies = tuple(args.concurrency or CONCURRENCIES)
    critical_right = f"{CRITICAL[0]}:{CRITICAL[1]}"
    load = wait_for_quiet(args.max_load, args.load_wait)
    result: dict[str, Any] = {
        "meta": {
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", started),
            "machine": machine(),
            "loadavg": load,
            "mode": "http",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "workers": args.workers,
            "threads": args.threads,
            "mix": {"critical": critical_right, "ordinary": ":".join(HTTP_ORDINARY),
                    "critical_every": CRITICAL_EVERY},
            "off_means": f"policies/ copy with {critical_right} not flagged critical",
        },
        "rounds": [],
    }
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        bodies = {"ordinary": work / "ordinary.json", "critical": work / "critical.json"}
        bodies["ordinary"].write_text(json.dumps(check_body(*HTTP_ORDINARY)))
        bodies["critical"].write_text(json.dumps(check_body(*CRITICAL)))
        policies = {"on": REPO / "policies",
                    "off": policies_without_critical(work / "policies-off", critical_right)}
        for number in range(args.rounds):
            round_result = {}
            for mode in ("on", "off") if number % 2 == 0 else ("off", "on"):  # ABBA: drift cancels out
                round_result[mode] = measure_mode(mode, work / f"round-{number}", policies[mode], bodies, args,
                                                  concurrencies)
            result["rounds"].append(round_result)
    except BenchError as err:
        say(f"FAILED: {err}")
        args.keep_tmp = True  # the server logs are the evidence
        return 1
    finally:
        if args.keep_tmp:
            say(f"scratch files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["meta"]["loadavg"]["at_end"] = loadavg()

    summary = {}
    lines = [f"POST /v1/check, {100 // CRITICAL_EVERY}% {critical_right} (critical) / "
             f"{100 - 100 // CRITICAL_EVERY}% {':'.join(HTTP_ORDINARY)}; workers {args.workers}, "
             f"threads {args.threads or 'CLI default'}; {args.duration:g} s per run, best of {args.rounds} "
             f"round(s); load average {load['at_start'][0]:.2f} at start",
             f"{'c':>3}  {'audit off':>26}  {'audit on':>26}  {'cost':>6}  {'paired':>6}  {'p50 +':>6}  {'p99 +':>6}"
             f"  {'CPU/check off':>13}  {'on':>7}  {'CPU cost':>8}"]
    for concurrency in concurrencies:
        key = str(concurrency)
        best = {mode: max((r[mode]["runs"][key] for r in result["rounds"]), key=lambda run: run["rps"])
                for mode in ("on", "off")}
        # CPU per check: the least of the rounds (contention only ever adds to it)
        cpu = {mode: min(r[mode]["runs"][key]["cpu_us_per_check"] for r in result["rounds"]) for mode in ("on", "off")}
        on, off = best["on"], best["off"]
        cost = 100 * (1 - on["rps"] / off["rps"])
        # each round's on and off ran back to back: their ratio is far less exposed to the machine's
        # drift than the best of one mode against the best of the other
        paired = [100 * (1 - r["on"]["runs"][key]["rps"] / r["off"]["runs"][key]["rps"]) for r in result["rounds"]]
        cpu_cost = 100 * (1 - cpu["off"] / cpu["on"])  # the throughput lost if CPU is all that limits
        summary[key] = {
            "off": {k: off[k] for k in ("rps", "p50_us", "p99_us")} | {"cpu_us_per_check": cpu["off"]},
            "on": {k: on[k] for k in ("rps", "p50_us", "p99_us")} | {"cpu_us_per_check": cpu["on"]},
            "cost_pct": round(cost, 2),
            "paired_cost_pct": [round(c, 2) for c in paired],
            "median_paired_cost_pct": round(statistics.median(paired), 2),
            "cpu_cost_pct": round(cpu_cost, 2),
            "p50_added_us": on["p50_us"] - off["p50_us"],
            "p99_added_us": on["p99_us"] - off["p99_us"],
            "within_budget_10pct": cost < 10 and statistics.median(paired) < 10,
        }
        cell = "{:>9,.0f}/s p50 {:>5} p99 {:>5}"
        lines.append(f"{concurrency:>3}  {cell.format(off['rps'], off['p50_us'], off['p99_us']):>26}  "
                     f"{cell.format(on['rps'], on['p50_us'], on['p99_us']):>26}  {cost:>5.1f}%  "
                     f"{statistics.median(paired):>5.1f}%  "
                     f"{on['p50_us'] - off['p50_us']:>6}  {on['p99_us'] - off['p99_us']:>6}"
                     f"  {cpu['off']:>10.1f} µs  {cpu['on']:>7.1f}  {cpu_cost:>7.1f}%")
    lines.append("(latencies in µs; cost = 1 - on/off checks per second, best run of each mode; paired = the median "
                 "over rounds of the same ratio within a round (on and off back to back, ABBA order); "
                 "CPU/check = CPU seconds of the sidecar's "
                 "processes and its Redis per check, least of the rounds; CPU cost = 1 - off/on CPU per check)")
    result["summary"] = summary
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"audit-{stamp}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))
    say(f"written: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--in-process", action="store_true",
                        help="the in-process measurement (Flask test client) instead of HTTP")
    parser.add_argument("--duration", type=float, default=10, help="HTTP: seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="HTTP: seconds of warm-up per server (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="HTTP: gunicorn workers (default 2, the CLI's)")
    parser.add_argument("--threads", type=int, help="HTTP: threads per worker; default: the CLI's")
    parser.add_argument("--concurrency", type=int, action="append",
                        help="HTTP: wrk connections, repeatable (default 8 and 1)")
    parser.add_argument("--rounds", type=int,
                        help="HTTP: on/off server pairs in ABBA order; best of each and the median paired "
                             "ratio (default 1); in process: rounds (default 5)")
    parser.add_argument("--checks", type=int, default=5000, help="in process: checks per round")
    parser.add_argument("--max-load", type=float, default=MAX_LOAD,
                        help=f"HTTP: wait until the 1-minute load average is at most this (default {MAX_LOAD})")
    parser.add_argument("--load-wait", type=float, default=LOAD_WAIT_S,
                        help=f"HTTP: longest wait for it, seconds (default {LOAD_WAIT_S})")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="HTTP: where audit-<UTC>.json goes")
    parser.add_argument("--keep-tmp", action="store_true", help="HTTP: keep the scratch directory (logs, data)")
    args = parser.parse_args(argv)
    if args.in_process:
        args.rounds = args.rounds or 5
        return in_process(args)
    args.rounds = args.rounds or 1
    if not (1 <= args.duration <= 600 and 0 <= args.warmup <= 60 and 1 <= args.rounds <= 10):
        parser.error("keep --duration in 1..600, --warmup in 0..60 and --rounds in 1..10")
    return http_mode(args)


if __name__ == "__main__":
    raise SystemExit(main())
