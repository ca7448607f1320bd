"""One command for the whole comparison: ``python -m bench.run_all [--only sidecar|cerbos]``.

Runs the sidecar's scenarios (generate data, token, serve, bulk import, check runs), then the
Cerbos anchor's, in the same run on the same machine, and writes
``bench/results/<UTC timestamp>.json`` (every raw wrk result and the metadata) and ``.md``
(the tables with sidecar/Cerbos ratios, also printed). A part that fails is recorded with the
step it failed at and the other part still runs; the exit status is 1 if any part failed.

Bounded everywhere: each wrk run by ``-d`` and ``timeout``, every start and import by a
deadline. Only 127.0.0.1 is contacted. Scratch files go to a temporary directory, removed at
the end unless ``--keep-tmp``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cerbos import run_cerbos_bench
from bench.directory_gen import PRESETS
from bench.report import markdown
from bench.sidecar_bench import run_sidecar_bench

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


def run_part(part: str, body: Callable[[Steps], dict[str, Any]]) -> dict[str, Any]:
    steps = Steps(part)
    try:
        return body(steps)
    except Exception as err:  # a failed part is a result to record, not the end of the run
        steps(f"FAILED: {err}")
        return {"error": {"step": steps.last, "message": str(err), "traceback": traceback.format_exc()}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("sidecar", "cerbos"), help="run one engine only")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per scenario (default 3)")
    parser.add_argument("--reps", type=int, default=1, help="measured runs per cell (default 1)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="large", help="sidecar data (default large)")
    parser.add_argument("--workers", type=int, default=2, help="sidecar gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, help="sidecar threads per worker (gthread); default: the CLI's")
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
            "threads": args.threads,
        }
    }
    timing = {"duration_s": args.duration, "warmup_s": args.warmup, "reps": args.reps}
    work = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    try:
        if args.only in (None, "sidecar"):
            result["sidecar"] = run_part(
                "sidecar",
                lambda say: run_sidecar_bench(
                    work / "sidecar", preset=args.preset, workers=args.workers, threads=args.threads, say=say, **timing
                ),
            )
        if args.only in (None, "cerbos"):
            result["cerbos"] = run_part("cerbos", lambda say: run_cerbos_bench(work, say=say, **timing))
    finally:
        if args.keep_tmp:
            print(f"scratch files kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = markdown(result)
    (args.out_dir / f"{stamp}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out_dir / f"{stamp}.md").write_text(report)
    print(report)
    print(f"written: {args.out_dir / stamp}.json and .md", file=sys.stderr)
    return 1 if any("error" in result.get(part, {}) for part in ("sidecar", "cerbos")) else 0


if __name__ == "__main__":
    raise SystemExit(main())
