"""The sidecar's scenarios: data, token, serve, bulk import, preflight, then wrk runs.

Steps: generate the preset's directory and check bodies (:mod:`bench.directory_gen`); create a
``check admin`` token; start the sidecar on CPU 1 (:mod:`bench.sidecar_server`); ``sidecar
import`` the directory while it runs; wait until a check sees the imported data; then per
scenario one preflight (the answers must equal the ``.expect.json``), a warm-up and the
measured runs. Scenarios mirror the Cerbos ones: ``check_single`` is ``POST /v1/check`` (one
role-only right, like Cerbos's ``single_simple``), ``check_batch_50`` is ``POST /v1/check/batch``
with 50 checks (like ``batch_50_resources``). RSS is read after start, import and each run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.directory_gen import write_all
from bench.localhost import BenchError, Progress, post_json, quiet
from bench.rights import drift_from_policies
from bench.sidecar_server import REPO, SidecarServer, create_token, import_directory
from bench.wrk import run_wrk, warm_up

ROUTES = {"check_single": "/v1/check", "check_batch_50": "/v1/check/batch"}
CHECKS_PER_REQUEST = {"check_single": 1, "check_batch_50": 50}
DEFAULT_MATRIX: tuple[tuple[str, int], ...] = (
    ("check_single", 1),
    ("check_single", 8),
    ("check_batch_50", 8),
)


def check_answer(scenario: str, answer: Any, expect: dict[str, Any]) -> str | None:
    """None if ``answer`` is what ``expect`` says, else what differs."""
    if not isinstance(answer, dict):
        return f"not a JSON object: {answer!r:.300}"
    if scenario == "check_single":
        return None if answer.get("allowed") == expect["allowed"] else f"allowed={answer.get('allowed')!r}"
    got = [r.get("allowed") for r in answer.get("results", [])]
    if got == expect["results"]:
        return None
    wrong = [i for i, (g, e) in enumerate(zip(got, expect["results"], strict=False)) if g != e]
    return f"{len(got)} results, {sum(1 for g in got if g is True)} allowed; first differing indexes {wrong[:10]}"


def preflight(url: str, token: str, body_file: Path, scenario: str) -> dict[str, Any]:
    """One request; raises unless it answers 200 with the expected decisions."""
    expect = json.loads(body_file.with_suffix(".expect.json").read_text())
    status, answer = post_json(url, body_file.read_bytes(), token=token)
    problem = f"HTTP {status} {answer!r:.300}" if status != 200 else check_answer(scenario, answer, expect)
    if problem:
        raise BenchError(f"preflight {scenario}: {problem}")
    return {k: v for k, v in expect.items() if k != "results"}


def wait_visible(url: str, token: str, body_file: Path, *, timeout_s: float = 30) -> float:
    """Seconds until the single check answers as expected after the import (API: within 1 s)."""
    start = time.monotonic()
    while True:
        try:
            preflight(url, token, body_file, "check_single")
            return time.monotonic() - start
        except BenchError:
            if time.monotonic() - start > timeout_s:
                raise
            time.sleep(0.1)


class SidecarSession:
    """The sidecar side of a run: data, token, server, import; then one measured wrk run at a time.

    ``with SidecarSession(...) as session:`` leaves a served, imported sidecar; ``prepare(scenario)``
    checks one answer and warms up, ``measure(scenario, conc, rep)`` returns one result row.
    """

    def __init__(self, work_dir: Path, *, preset: str = "large", workers: int = 2, threads: int | None = None,
                 server: str | None = None, say: Progress = quiet) -> None:
        self.work_dir = work_dir
        self.preset = preset
        self.workers = workers
        self.threads = threads
        self.server_kind = server
        self.say = say
        self.meta: dict[str, Any] = {"preset": preset, "workers": workers, "threads": threads,
                                     "server": server or "default"}
        self.rows: list[dict[str, Any]] = []
        self._server: SidecarServer | None = None
        self._warmed: set[str] = set()

    def __enter__(self) -> SidecarSession:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        drift = drift_from_policies(REPO / "policies")
        if drift:
            self.meta["policy_drift"] = drift  # the expectations below come from bench/rights.py
        self.say(f"generating the {self.preset} directory")
        started = time.monotonic()
        jsonl, self.bodies = self.work_dir / "directory.jsonl", self.work_dir / "bodies"
        self.meta["data"] = write_all(self.preset, jsonl, bodies_dir=self.bodies)
        self.meta["generate_s"] = round(time.monotonic() - started, 2)
        data_dir = self.work_dir / "sidecar-data"
        self.say("creating a token (sidecar token create)")
        self.token = create_token(data_dir)
        self.say(f"starting the sidecar (sidecar serve --workers {self.workers}, server {self.meta['server']})")
        server = SidecarServer(data_dir, workers=self.workers, threads=self.threads, server=self.server_kind)
        self._server = server.__enter__()
        try:
            self.meta["ready_s"] = round(server.ready_s or 0, 2)
            self.meta["rss_started"] = server.rss()
            self.say(f"importing {jsonl.name} (sidecar import)")
            import_s, output = import_directory(data_dir, jsonl)
            self.meta["import_s"], self.meta["import_output"] = round(import_s, 2), output.strip()[-500:]
            self.say("waiting until a check sees the import")
            single_url = server.base_url + ROUTES["check_single"]
            self.meta["visible_after_import_s"] = round(
                wait_visible(single_url, self.token, self.bodies / "check_single.json"), 2)
            self.meta["rss_after_import"] = server.rss()
        except BaseException:
            server.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self.meta["rss_after_load"] = self._server.rss()
            self._server.__exit__(None, None, None)
            self._server = None

    def prepare(self, scenario: str, warmup_s: float) -> None:
        if scenario in self._warmed or self._server is None:
            return
        url, body = self._server.base_url + ROUTES[scenario], self.bodies / f"{scenario}.json"
        self.say(f"preflight and warm-up: sidecar {scenario}")
        self.meta.setdefault("preflight", {})[scenario] = preflight(url, self.token, body, scenario)
        warm_up(url, body_file=body, seconds=warmup_s, bearer_token=self.token)
        self._warmed.add(scenario)

    def measure(self, scenario: str, concurrency: int, rep: int, duration_s: float) -> dict[str, Any]:
        if self._server is None:
            raise BenchError("the sidecar is not running")
        url, body = self._server.base_url + ROUTES[scenario], self.bodies / f"{scenario}.json"
        result = run_wrk(url, body_file=body, concurrency=concurrency, duration_s=duration_s, bearer_token=self.token)
        rss = self._server.rss()
        row = {"engine": "sidecar", "scenario": scenario, "conc": concurrency, "rep": rep,
               "checks_per_request": CHECKS_PER_REQUEST[scenario], "server_rss_kb": rss["sidecar_kb"],
               "rss": rss, "wrk": result}
        self.rows.append(row)
        self.say(f"sidecar {scenario} c={concurrency} rep {rep}: {result['rps']:,.0f} req/s, "
                 f"p99 {result['p99_us'] / 1000:.2f} ms, errors {result['errors']}")
        return row


def run_sidecar_bench(
    work_dir: Path,
    *,
    preset: str = "large",
    workers: int = 2,
    threads: int | None = None,
    server: str | None = None,
    duration_s: float = 10,
    warmup_s: float = 3,
    reps: int = 1,
    matrix: Iterable[tuple[str, int]] = DEFAULT_MATRIX,
    say: Progress = quiet,
) -> dict[str, Any]:
    """The sidecar alone: meta (data, timings, RSS) and one row per wrk run, shaped like the Cerbos rows."""
    with SidecarSession(work_dir, preset=preset, workers=workers, threads=threads, server=server,
                        say=say) as session:
        for rep in range(1, reps + 1):
            for scenario, concurrency in matrix:
                session.prepare(scenario, warmup_s)
                session.measure(scenario, concurrency, rep, duration_s)
    return {"meta": session.meta, "rows": session.rows}
