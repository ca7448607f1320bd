"""The sidecar under test, started as the README says and pinned to CPU 1 (wrk has CPU 0).

Contract assumed from API.md (the CLI is being written alongside):

* ``sidecar token create NAME --scope S [--scope S ...]`` prints the token, last line of stdout;
* ``sidecar serve --host H --port P --workers N [--server S]`` runs the HTTP server; ``GET /readyz`` is 200 when
  ready; with no tokens file it creates ``$SIDECAR_DATA_DIR/tokens.json``;
* ``sidecar import FILE`` bulk-loads a JSON Lines directory (see ``bench/directory_gen.py``)
  into the Redis the server uses (the private one under the same ``SIDECAR_DATA_DIR``).

Every command gets ``SIDECAR_DATA_DIR`` (a fresh directory), ``SIDECAR_POLICY_DIR`` (the repo's
``policies/``) and ``SIDECAR_LOG_FORMAT=json``; other ``SIDECAR_*`` variables of the caller
pass through (``SIDECAR_REDIS_URL`` would point everything at an external Redis). The server
is its own process group, so stopping it also stops the private redis-server it started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.localhost import (
    BenchError,
    children,
    comm,
    cpus_allowed,
    free_port,
    rss_kb,
    stop_group,
    wait_http_ok,
    wait_unix_ok,
)

REPO = Path(__file__).resolve().parent.parent
SERVER_CPU = 1


def sidecar_command() -> Path:
    """``$BENCH_SIDECAR_CMD`` if set (another build, a stub), else the ``sidecar`` script next to
    the running interpreter (the venv's), else the one on PATH."""
    override = os.environ.get("BENCH_SIDECAR_CMD")
    if override:
        return Path(override)
    beside = Path(sys.executable).parent / "sidecar"
    if beside.exists():
        return beside
    found = shutil.which("sidecar")
    if found is None:
        raise BenchError("no `sidecar` command: run `make install` (pip install -e .)")
    return Path(found)


def sidecar_env(data_dir: Path) -> dict[str, str]:
    return dict(
        os.environ,
        SIDECAR_DATA_DIR=str(data_dir),
        SIDECAR_POLICY_DIR=os.environ.get("SIDECAR_POLICY_DIR", str(REPO / "policies")),
        SIDECAR_LOG_FORMAT="json",
    )


def run_cli(data_dir: Path, args: Sequence[str], *, timeout_s: float = 60) -> str:
    """Run one ``sidecar`` subcommand to completion; its stdout, or :class:`BenchError`."""
    argv = [str(sidecar_command()), *args]
    try:
        done = subprocess.run(
            argv, env=sidecar_env(data_dir), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"`sidecar {' '.join(args)}` did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip())[-1500:]
        raise BenchError(f"`sidecar {' '.join(args)}` exited with {done.returncode}: {detail}")
    return done.stdout


def create_token(data_dir: Path, name: str = "bench", scopes: Sequence[str] = ("check", "admin")) -> str:
    """A new service token (printed once by the CLI: the last non-empty stdout line)."""
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    lines = [line.strip() for line in run_cli(data_dir, ["token", "create", name, *scope_args]).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise BenchError("`sidecar token create` printed no token")
    return lines[-1]


def import_directory(data_dir: Path, jsonl: Path, *, timeout_s: float = 1800) -> tuple[float, str]:
    """``sidecar import FILE``: (seconds taken, its stdout)."""
    start = time.monotonic()
    out = run_cli(data_dir, ["import", str(jsonl)], timeout_s=timeout_s)
    return time.monotonic() - start, out


class SidecarServer:
    """``taskset -c 1 sidecar serve`` on a free loopback port; stdout/stderr to ``log``."""

    def __init__(
        self, data_dir: Path, *, workers: int = 2, threads: int | None = None, ready_timeout_s: float = 60,
        server: str | None = None, uds: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.threads = threads
        self.server = server  # `sidecar serve --server`; None: the CLI's default
        self.uds = uds  # `sidecar serve --uds`: listen on this socket instead of the port
        self.ready_timeout_s = ready_timeout_s
        self.port = free_port()
        self.log = data_dir.parent / f"sidecar-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("the sidecar is not running")
        return self.proc.pid

    def __enter__(self) -> SidecarServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            "taskset", "-c", str(SERVER_CPU), str(sidecar_command()), "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
        ]  # fmt: skip
        if self.threads:
            argv += ["--threads", str(self.threads)]  # the CLI's gthread option, beyond API.md
        if self.server:
            argv += ["--server", self.server]
        if self.uds:
            argv += ["--uds", str(self.uds)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, env=sidecar_env(self.data_dir), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            if self.uds:
                self.ready_s = wait_unix_ok(
                    self.uds, "/readyz", self.proc, timeout_s=self.ready_timeout_s, log=self.log
                )
            else:
                self.ready_s = wait_http_ok(
                    f"{self.base_url}/readyz", self.proc, timeout_s=self.ready_timeout_s, log=self.log
                )
        except BaseException:
            stop_group(self.proc)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            stop_group(self.proc, grace_s=15)

    def rss(self) -> dict[str, Any]:
        return process_tree_rss(self.pid)


def process_tree_rss(pid: int) -> dict[str, Any]:
    """VmRSS in kB of the sidecar's processes: ``pid`` (the server's master), its Python
    descendants (the workers) and any other descendant (e.g. the private redis-server).

    RSS double-counts the pages forked workers still share with the master, so ``sidecar_kb``
    (master + workers) is an upper bound of what the sidecar uses.
    """
    python_names = {comm(pid), "sidecar", "gunicorn", "granian-worker", "python", "python3"}
    workers: list[int] = []
    others: dict[str, int] = {}
    pending = children(pid)
    while pending:
        child = pending.pop(0)
        pending.extend(children(child))
        if comm(child) in python_names:
            workers.append(rss_kb(child))
        else:
            others[f"{comm(child)}:{child}"] = rss_kb(child)
    master = rss_kb(pid)
    return {
        "master_kb": master,
        "workers_kb": workers,
        "others_kb": others,
        "sidecar_kb": master + sum(workers),
        "cpus_allowed": cpus_allowed(pid),
    }
