"""The Cerbos anchor, re-measured in our run: Cerbos 0.55.0 on CPU 1, wrk on CPU 0.

Same method as ``anchors/run_cerbos_bench.sh`` (audit off, ``--log-level=warn``, telemetry
off, loopback listeners, gops on 127.0.0.1), using the anchors' policies, config and request
bodies, copied to a work directory because ``/work/shared`` is read-only. Before each
scenario the policy test matrix has passed (``cerbos compile``) and one request has returned
the expected allow/deny counts. Cerbos is stopped by its PID in every case.

``ANCHORS_SRC`` (default ``/work/shared/anchors``) is where the anchors live;
``ANCHORS_HOME`` (default ``/tmp/anchors``) is where their ``setup.sh`` installs Cerbos.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.localhost import (
    BenchError,
    Progress,
    cpus_allowed,
    free_port,
    post_json,
    quiet,
    rss_kb,
    stop_pid,
    wait_http_ok,
)
from bench.wrk import run_wrk, warm_up

CERBOS_VERSION = "0.55.0"
SERVER_CPU = 1
ANCHORS_SRC = Path(os.environ.get("ANCHORS_SRC", "/work/shared/anchors"))
ANCHORS_HOME = Path(os.environ.get("ANCHORS_HOME", "/tmp/anchors"))

CHECKS_PER_REQUEST = {"single_simple": 1, "single_cond": 1, "batch_10_actions": 10, "batch_50_resources": 50}
# (scenario, concurrency) in run order; the sidecar's scenarios are paired with these in the report
DEFAULT_MATRIX: tuple[tuple[str, int], ...] = (
    ("single_simple", 1),
    ("single_simple", 8),
    ("single_cond", 1),
    ("single_cond", 8),
    ("batch_50_resources", 8),
)


def cerbos_binary() -> Path:
    return ANCHORS_HOME / "cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"


def _version(binary: Path) -> str:
    if not os.access(binary, os.X_OK):
        return ""
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.splitlines()[0].strip() if done.stdout else ""


def ensure_cerbos() -> Path:
    """The Cerbos binary, installed by the anchors' idempotent ``setup.sh`` if it is missing."""
    binary = cerbos_binary()
    if _version(binary) != CERBOS_VERSION:
        env = dict(os.environ, ANCHORS_HOME=str(ANCHORS_HOME), CERBOS_VERSION=CERBOS_VERSION)
        subprocess.run([str(ANCHORS_SRC / "setup.sh")], env=env, check=True, timeout=900)
    if _version(binary) != CERBOS_VERSION:
        raise BenchError(f"cerbos {CERBOS_VERSION} not found at {binary} after setup.sh")
    return binary


def stage(work_dir: Path) -> Path:
    """Copy the anchors' policies, audit-off config and bodies under ``work_dir/cerbos``."""
    dest = work_dir / "cerbos"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ANCHORS_SRC / "cerbos/policies", dest / "policies")
    shutil.copytree(ANCHORS_SRC / "wrk/bodies", dest / "bodies")
    shutil.copy(ANCHORS_SRC / "cerbos/config.audit-off.yaml", dest / "config.yaml")
    return dest


def compile_policies(binary: Path, policy_dir: Path) -> str:
    """Run the policy test matrix; the summary line, e.g. ``264 tests executed [264 OK]``."""
    done = subprocess.run(
        [str(binary), "compile", "--no-color", "-o", "list", str(policy_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0:
        raise BenchError(f"cerbos compile failed ({done.returncode}): {done.stdout[-800:]}{done.stderr[-800:]}")
    return lines[-1] if lines else ""


class CerbosServer:
    """``taskset -c 1 cerbos server`` on free loopback ports; stopped by PID on exit."""

    def __init__(self, binary: Path, staged: Path) -> None:
        self.binary = binary
        self.staged = staged
        self.log = staged / "cerbos.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def check_url(self) -> str:
        return f"{self.base_url}/api/check/resources"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("cerbos is not running")
        return self.proc.pid

    def __enter__(self) -> CerbosServer:
        env = dict(
            os.environ,
            CERBOS_POLICY_DIR=str(self.staged / "policies"),
            CERBOS_HTTP_PORT=str(self.port),
            CERBOS_GRPC_PORT=str(free_port()),
            CERBOS_NO_TELEMETRY="1",
        )
        argv = [
            "taskset", "-c", str(SERVER_CPU), str(self.binary), "server",
            f"--config={self.staged / 'config.yaml'}", "--log-level=warn",
            f"--debug-listen-addr=127.0.0.1:{free_port()}",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http_ok(f"{self.base_url}/_cerbos/health", self.proc, timeout_s=20, log=self.log)
        except BaseException:
            stop_pid(self.proc)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            stop_pid(self.proc)


def preflight(url: str, body_file: Path, expect_file: Path) -> dict[str, int]:
    """POST the body once; the allow/deny counts must equal the ``.expect.json`` file."""
    status, answer = post_json(url, body_file.read_bytes())
    if status != 200 or not isinstance(answer, dict):
        raise BenchError(f"preflight {body_file.name}: HTTP {status} {answer!r:.300}")
    effects = [e for res in answer["results"] for e in res["actions"].values()]
    got = {"allow": effects.count("EFFECT_ALLOW"), "deny": effects.count("EFFECT_DENY")}
    expected = json.loads(expect_file.read_text())
    if got != expected:
        raise BenchError(f"preflight {body_file.name}: got {got}, expected {expected}")
    return got


class CerbosSession:
    """The Cerbos side of a run: install check, staged policies (test matrix passed), a server;
    then ``prepare(scenario)`` (preflight, warm-up) and ``measure(scenario, conc, rep)``."""

    def __init__(self, work_dir: Path, *, say: Progress = quiet) -> None:
        self.work_dir = work_dir
        self.say = say
        self.meta: dict[str, Any] = {"version": CERBOS_VERSION, "audit": "off", "log_level": "warn"}
        self.rows: list[dict[str, Any]] = []
        self._server: CerbosServer | None = None
        self._warmed: set[str] = set()

    def __enter__(self) -> CerbosSession:
        self.say("checking the Cerbos install (anchors' setup.sh if missing)")
        binary = ensure_cerbos()
        self.staged = stage(self.work_dir)
        self.say("compiling the policies and running their test matrix")
        self.meta["policy_tests"] = compile_policies(binary, self.staged / "policies")
        self.say("starting Cerbos")
        self._server = CerbosServer(binary, self.staged).__enter__()
        self.meta["cpus_allowed"] = cpus_allowed(self._server.pid)
        self.meta["rss_kb_started"] = rss_kb(self._server.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None

    def prepare(self, scenario: str, warmup_s: float) -> None:
        if scenario in self._warmed or self._server is None:
            return
        body = self.staged / "bodies" / f"{scenario}.json"
        self.say(f"preflight and warm-up: cerbos {scenario}")
        self.meta.setdefault("preflight", {})[scenario] = preflight(
            self._server.check_url, body, body.with_suffix(".expect.json"))
        warm_up(self._server.check_url, body_file=body, seconds=warmup_s)
        self._warmed.add(scenario)

    def measure(self, scenario: str, concurrency: int, rep: int, duration_s: float) -> dict[str, Any]:
        if self._server is None:
            raise BenchError("cerbos is not running")
        body = self.staged / "bodies" / f"{scenario}.json"
        result = run_wrk(self._server.check_url, body_file=body, concurrency=concurrency, duration_s=duration_s)
        row = {"engine": "cerbos", "scenario": scenario, "conc": concurrency, "rep": rep,
               "checks_per_request": CHECKS_PER_REQUEST[scenario], "server_rss_kb": rss_kb(self._server.pid),
               "wrk": result}
        self.rows.append(row)
        self.say(f"cerbos {scenario} c={concurrency} rep {rep}: {result['rps']:,.0f} req/s, "
                 f"p99 {result['p99_us'] / 1000:.2f} ms, errors {result['errors']}")
        return row


def run_cerbos_bench(
    work_dir: Path,
    *,
    duration_s: float = 10,
    warmup_s: float = 3,
    reps: int = 1,
    matrix: Iterable[tuple[str, int]] = DEFAULT_MATRIX,
    say: Progress = quiet,
) -> dict[str, Any]:
    """Cerbos alone: start it, run ``matrix`` (each cell ``reps`` times), stop it; meta + result rows."""
    with CerbosSession(work_dir, say=say) as session:
        for rep in range(1, reps + 1):
            for scenario, concurrency in matrix:
                session.prepare(scenario, warmup_s)
                session.measure(scenario, concurrency, rep, duration_s)
    return {"meta": session.meta, "rows": session.rows}
