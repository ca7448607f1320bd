"""One command for the whole comparison: ``python -m bench.run_all [--only sidecar|cerbos]``.

Sets up the sidecar (generate data, token, ``sidecar serve`` on CPU 1, bulk import) and Cerbos
0.55 (policy test matrix, server on CPU 1) side by side, then measures them in alternating
rounds: for each rep, each scenario runs on the sidecar and then on its Cerbos counterpart, so
both see the same machine load. Writes ``bench/results/<UTC timestamp>.json`` (every raw wrk
result and the metadata) and ``.md`` (the tables with sidecar/Cerbos ratios, also printed). A
part that fails is recorded with the step it failed at and the other part still runs; the exit
status is 1 if any part failed.

Bounded everywhere: each wrk run by ``-d`` and ``timeout``, every start and import by a
deadline. Only 127.0.0.1 is contacted. Scratch files go to a temporary directory, removed at
the end unless ``--keep-tmp``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.cerbos import CerbosSession
from bench.directory_gen import PRESETS
from bench.report import markdown
from bench.sidecar_bench import SidecarSession

# One round, in order: each sidecar cell next to its Cerbos counterpart (report.PAIRS).
ROUND: tuple[tuple[str, str, int], ...] = (
    ("sidecar", "check_single", 1),
    ("cerbos", "single_simple", 1),
    ("sidecar", "check_single", 8),
    ("cerbos", "single_simple", 8),
    ("cerbos", "single_cond", 8),
    ("sidecar", "check_batch_50", 8),
    ("cerbos", "batch_50_resources", 8),
)

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split("[")[0].strip()
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, {wrk_version}"
    )


class Steps:
    """Prints each step to stderr and remembers the last one, for the failure record."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.last = "start"

    def __call__(self, step: str) -> None:
        self.last = step
        print(f"[{time.strftime('%H:%M:%S')} {self.part}] {step}", file=sys.stderr, flush=True)


def failure(steps: Steps, err: Exception) -> dict[str, Any]:
    """A failed part is a result to record, not the end of the run."""
    steps(f"FAILED: {err}")
    return {"step": steps.last, "message": str(err), "traceback": traceback.format_exc()}


def alternate(sessions: dict[str, Any], steps: dict[str, Steps], *, reps: int, duration_s: float,
              warmup_s: float) -> dict[str, dict[str, Any]]:
    """Prepare every cell, then ``reps`` rounds of :data:`ROUND`; a part that fails drops out."""
    errors: dict[str, dict[str, Any]] = {}
    for rep in range(0, reps + 1):  # round 0 prepares (preflight, warm-up)
        for engine, scenario, concurrency in ROUND:
            session = sessions.get(engine)
            if session is None or engine in errors:
                continue
            try:
                if rep == 0:
                    session.prepare(scenario, warmup_s)
                else:
                    session.measure(scenario, concurrency, rep, duration_s)
            except Exception as err:
                errors[engine] = failure(steps[engine], err)
    return errors


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("sidecar", "cerbos"), help="run one engine only")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per scenario (default 3)")
    parser.add_argument("--reps", type=int, default=1, help="measured runs per cell (default 1)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="large", help="sidecar data (default large)")
    parser.add_argument("--workers", type=int, default=2, help="sidecar worker processes (default 2)")
    parser.add_argument("--server", choices=("granian", "gunicorn"), help="sidecar HTTP server; default: the CLI's")
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker (gthread); default: the CLI's")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep-tmp", action="store_true", help="keep the scratch directory (logs, data)")
    args = parser.parse_args(argv)
    if not (1 <= args.duration <= 600 and 0 <= args.warmup <= 60 and 1 <= args.reps <= 10):
        parser.error("keep --duration in 1..600, --warmup in 0..60 and --reps in 1..10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.gmtime()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", started)
    result: dict[str, Any] = {
        "meta": {
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", started),
            "machine": machine(),
            # other work on the machine skews everything: compare runs started on an idle one
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "reps": args.reps,
            "preset": args.preset,
            "workers": args.workers,
            "server": args.server or "default (granian)",
            "threads": args.threads,
        }
    }
    work = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    steps = {"sidecar": Steps("sidecar"), "cerbos": Steps("cerbos")}
    candidates: dict[str, Any] = {}
    if args.only in (None, "sidecar"):
        candidates["sidecar"] = SidecarSession(work / "sidecar", preset=args.preset, workers=args.workers,
                                               threads=args.threads, server=args.server, say=steps["sidecar"])
    if args.only in (None, "cerbos"):
        candidates["cerbos"] = CerbosSession(work, say=steps["cerbos"])
    errors: dict[str, dict[str, Any]] = {}
    try:
        with contextlib.ExitStack() as stack:
            sessions = {}
            for engine, session in candidates.items():
                try:
                    sessions[engine] = stack.enter_context(session)
                except Exception as err:
                    errors[engine] = failure(steps[engine], err)
            errors.update(alternate(sessions, steps, reps=args.reps, duration_s=args.duration, warmup_s=args.warmup))
    finally:
        if args.keep_tmp:
            print(f"scratch files kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    for engine, session in candidates.items():
        result[engine] = {"meta": session.meta, "rows": session.rows}
        if engine in errors:
            result[engine]["error"] = errors[engine]

    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = markdown(result)
    (args.out_dir / f"{stamp}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out_dir / f"{stamp}.md").write_text(report)
    print(report)
    print(f"written: {args.out_dir / stamp}.json and .md", file=sys.stderr)
    return 1 if any("error" in result.get(part, {}) for part in ("sidecar", "cerbos")) else 0


if __name__ == "__main__":
    raise SystemExit(main())
