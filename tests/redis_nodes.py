"""Real redis-server processes on free loopback ports, for the outage and failover tests.

A :class:`RedisNode` is one redis-server (a primary, a replica) or one sentinel, started from
the same binary the sidecar uses (``redis_server_binary()``), stopped, killed, paused
(SIGSTOP: a Redis that accepts connections and answers nothing) and resumed by the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis

from sidecar.store.redis_server import redis_server_binary
from tests.conftest import free_port, wait_until

SERVICE = "sidecar"
DOWN_AFTER_MS = 1000  # sentinels call the primary down after this long without an answer (not less: a
                      # loaded 2-core machine makes a shorter one fail over by mistake)
FAILOVER_TIMEOUT_MS = 2000


REDIS_DOWN = (redis.RedisError, OSError)  # what a probe of a Redis that is (re)starting may raise


class RedisNode:
    def __init__(self, directory: Path, *, args: tuple[str, ...] = (), sentinel_config: str | None = None,
                 binary: str | None = None, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.args = args
        self.sentinel_config = sentinel_config
        self.binary = binary or redis_server_binary()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout_s)

    def start(self, timeout_s: float = 10.0) -> RedisNode:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        if self.sentinel_config is not None:
            config = self.directory / "sentinel.conf"
            if not config.exists():  # a restarted sentinel keeps what it learnt (it rewrites the file)
                config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                                  f"logfile {log}\n{self.sentinel_config}")
            argv = [self.binary, str(config), "--sentinel"]
        else:
            argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                    "--save", "", "--appendonly", "no", "--logfile", str(log), *self.args]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log.read_text(errors='replace')[-2000:]}")
            return bool(self.client(0.5).ping())

        if not wait_until(answers, timeout_s, ignoring=(redis.RedisError, OSError)):
            raise RuntimeError(f"redis-server on port {self.port} did not answer")
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write to its replicas."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections; nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class SentinelSet:
    """One primary, one replica and three sentinels watching them, all on loopback."""

    def __init__(self, directory: Path) -> None:
        self.primary = RedisNode(directory / "primary")
        self.replica = RedisNode(directory / "replica")
        self.sentinels: list[RedisNode] = []
        self.directory = directory

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> SentinelSet:
        self.primary.start()
        self.replica.args = ("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start()
        assert wait_until(lambda: self.replica.client().info("replication")["master_link_status"] == "up",
                          ignoring=REDIS_DOWN)
        config = (f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                  f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                  f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                  f"sentinel parallel-syncs {SERVICE} 1\n")
        self.sentinels = [RedisNode(self.directory / f"sentinel-{i}", sentinel_config=config).start()
                          for i in range(3)]
        assert wait_until(lambda: all(
            s.client().execute_command("SENTINEL", "MASTER", SERVICE) and
            int(_pairs(s.client().execute_command("SENTINEL", "MASTER", SERVICE))["num-other-sentinels"]) == 2 and
            int(_pairs(s.client().execute_command("SENTINEL", "MASTER", SERVICE))["num-slaves"]) == 1
            for s in self.sentinels), timeout_s=15, ignoring=REDIS_DOWN)
        return self

    def primary_port(self) -> int:
        address = self.sentinels[0].client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(address[1])

    def nodes(self) -> Iterator[RedisNode]:
        yield self.primary
        yield self.replica
        yield from self.sentinels

    def stop(self) -> None:
        for node in self.nodes():
            node.stop()


def _pairs(flat: list[bytes] | dict[bytes, bytes]) -> dict[str, str]:
    if isinstance(flat, dict):
        return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else str(v)
                for k, v in flat.items()}
    items = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
    return dict(zip(items[::2], items[1::2], strict=True))
