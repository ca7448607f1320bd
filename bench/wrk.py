"""One wrk run, bounded and pinned: ``timeout T taskset -c CPU wrk -t1 -cC -dDs --latency``.

:func:`run_wrk` POSTs a JSON body file (or GETs when there is none) through ``post_json.lua``
and returns the script's ``RESULT_JSON`` line as a dict: ``rps``, ``p50_us`` ... ``p999_us``,
``non_2xx``, ``statuses``, ``err_*`` and the derived ``errors`` (socket errors + non-2xx).
A bearer token travels in the environment, not in argv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.localhost import BenchError, require_loopback

LUA_SCRIPT = Path(__file__).with_name("post_json.lua")
LOADGEN_CPU = 0
SOCKET_ERRORS = ("err_connect", "err_read", "err_write", "err_timeout")


def run_wrk(
    url: str,
    *,
    body_file: Path | None,
    concurrency: int,
    duration_s: float,
    bearer_token: str | None = None,
    cpu: int = LOADGEN_CPU,
    request_timeout_s: float = 5.0,
    script: Path = LUA_SCRIPT,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run wrk once against ``url`` (127.0.0.1 only) and return its parsed result.

    ``script`` and ``extra_env`` let a benchmark send another mix of requests (bench/mix.lua).
    """
    require_loopback(url)
    for tool in ("wrk", "taskset", "timeout"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not on PATH")
    seconds = max(1, round(duration_s))
    hard_limit = seconds + 30  # wrk stops itself at -d; `timeout` covers a hung wrk
    argv = [
        "timeout", "-k", "5", str(hard_limit),
        "taskset", "-c", str(cpu),
        "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={request_timeout_s:g}s", "--latency",
        "-s", str(script), url,
    ]  # fmt: skip
    env = dict(os.environ, BODY_FILE=str(body_file) if body_file else "", BEARER_TOKEN=bearer_token or "",
               **(extra_env or {}))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=hard_limit + 10, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("RESULT_JSON "))
            result["errors"] = sum(result[k] for k in SOCKET_ERRORS) + result["non_2xx"]
            result["concurrency"] = concurrency
            return result
    raise BenchError(f"wrk gave no RESULT_JSON (exit {done.returncode}): {done.stderr.strip()[-500:]}")


def warm_up(url: str, *, body_file: Path | None, seconds: float, bearer_token: str | None = None) -> None:
    """A short discarded run at concurrency 8: connections, caches and heaps settle before measuring."""
    if seconds > 0:
        run_wrk(url, body_file=body_file, concurrency=8, duration_s=seconds, bearer_token=bearer_token)
