"""D2, D18: one owner of the embedded Redis.

Only ``sidecar serve`` starts a redis-server (and restarts it when it exits); a CLI command
connects to the running one or fails with one line; a lock file keeps a second server off a
data directory whose server is alive, hung or orphaned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.store.redis_server import EmbeddedRedis, RedisDirectoryBusy, RedisServer
from tests.conftest import POLICY_DIR, wait_until
from tests.nginx_harness import free_port

# Every test here runs real redis-server / sidecar processes (hung, killed, restarted): slow.
pytestmark = pytest.mark.e2e

SIDECAR = [sys.executable, "-m", "sidecar"]


def servers_on(socket: Path) -> list[int]:
    """Pids of every redis-server process started for ``socket``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()  # retitled: "<binary> unixsocket:<path>"
        except OSError:
            continue
        if b"redis-server" in argv and str(socket).encode() in argv:
            found.append(int(entry.name))
    return found


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "SIDECAR_DATA_DIR": str(data), "SIDECAR_POLICY_DIR": str(POLICY_DIR),
           "SIDECAR_LOG_FORMAT": "json"}
    # Output captured through pipes: a redis-server started by the command would hold them open.
    return subprocess.run([*SIDECAR, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    if server.pid is not None:
        os.kill(server.pid, signal.SIGCONT)
    server.stop()


@pytest.mark.parametrize("command", [["audit", "verify", "--chain", "ch-1"],
                                     ["check", "--employee", "e-1", "--location", "l-1", "--right", "calendar:view"],
                                     ["seats", "--chain", "ch-1"]])
def test_a_cli_command_without_a_running_server_fails_with_one_line_and_starts_none(
        tmp_path: Path, command: list[str]) -> None:
    result = cli(tmp_path, *command)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Redis does not answer" in result.stderr
    assert "sidecar serve" in result.stderr and "Traceback" not in result.stderr
    assert servers_on((tmp_path / "redis" / "redis.sock").resolve()) == []


def test_a_cli_command_uses_the_running_embedded_redis(tmp_path: Path, embedded: RedisServer) -> None:
    result = cli(tmp_path, "audit", "verify", "--chain", "ch-1")
    assert result.returncode == 0, result.stderr
    assert "c:ch-1: intact, 0 events" in result.stdout
    assert servers_on(embedded.socket) == [embedded.pid]


def test_a_hung_embedded_redis_is_not_replaced_by_a_cli_command(tmp_path: Path, embedded: RedisServer) -> None:
    assert embedded.pid is not None
    os.kill(embedded.pid, signal.SIGSTOP)
    result = cli(tmp_path, "audit", "verify", "--chain", "ch-1")
    assert result.returncode == 1 and "Redis does not answer" in result.stderr
    assert servers_on(embedded.socket) == [embedded.pid]


def test_a_second_owner_of_a_live_directory_is_refused(tmp_path: Path, embedded: RedisServer) -> None:
    with pytest.raises(RedisDirectoryBusy, match="in use by another sidecar serve"):
        RedisServer(tmp_path / "redis").start()
    assert servers_on(embedded.socket) == [embedded.pid]


def test_a_hung_server_keeps_its_directory(tmp_path: Path, embedded: RedisServer) -> None:
    assert embedded.pid is not None
    os.kill(embedded.pid, signal.SIGSTOP)
    with pytest.raises(RedisDirectoryBusy):
        RedisServer(tmp_path / "redis").start()
    assert servers_on(embedded.socket) == [embedded.pid]


def test_a_server_orphaned_by_a_killed_owner_is_stopped_before_a_new_one_starts(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from sidecar.store.redis_server import RedisServer; "
         f"RedisServer(Path({str(directory)!r})).start(); print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
        orphan = servers_on(directory.resolve() / "redis.sock")
        assert len(orphan) == 1
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    server = RedisServer(directory).start()
    try:
        assert servers_on(server.socket) == [server.pid] and server.pid not in orphan and server.ping()
    finally:
        server.stop()


def test_serve_restarts_an_embedded_redis_that_exits(tmp_path: Path) -> None:
    restarts: list[int] = []
    embedded = EmbeddedRedis(tmp_path / "redis", lambda: restarts.append(1), backoff_s=(0.05, 0.5)).start()
    try:
        first = embedded.server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: restarts, 20)
        assert restarts == [1]
        assert embedded.server.ping() and servers_on(embedded.server.socket) == [embedded.server.pid] != [first]
    finally:
        embedded.stop()
    assert servers_on(embedded.server.socket) == []


def test_sidecar_serve_owns_restarts_and_counts_its_embedded_redis(tmp_path: Path) -> None:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "SIDECAR_DATA_DIR": str(tmp_path), "SIDECAR_POLICY_DIR": str(POLICY_DIR),
           "SIDECAR_LOG_FORMAT": "json"}
    argv = [*SIDECAR, "serve", "--port", str(port), "--workers", "1"]
    with open(tmp_path / "out.log", "wb") as out, open(tmp_path / "err.log", "wb") as err:
        serve = subprocess.Popen(argv, env=env, stdout=out, stderr=err, start_new_session=True)
    socket = (tmp_path / "redis" / "redis.sock").resolve()
    try:
        assert wait_until(lambda: ready(port), 60), (tmp_path / "err.log").read_text()
        [first] = servers_on(socket)
        second = subprocess.run([*SIDECAR, "serve", "--port", str(free_port())], env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert second.returncode == 1 and "in use by another sidecar serve" in second.stderr
        assert second.stderr.count("\n") == 1 and servers_on(socket) == [first]

        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: len(servers_on(socket)) == 1 and servers_on(socket) != [first] and ready(port), 30)
        counted = "sidecar_embedded_redis_restarts_total 1.0"
        assert wait_until(lambda: counted in call(port, "/metrics")[1].decode(), 10)
        logged = (tmp_path / "out.log").read_text() + (tmp_path / "err.log").read_text()
        assert "embedded_redis_exited" in logged and "embedded_redis_restarted" in logged
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
    assert servers_on(socket) == []


def call(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def ready(port: int) -> bool:
    try:
        return call(port, "/readyz")[0] == 200
    except OSError:
        return False
