"""A private PostgreSQL cluster for tests and benchmarks: the Debian package's binaries, no mocks.

``PostgresCluster(root).start()`` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``
(the newest installed), listening only on a unix socket in ``root`` (no TCP port to collide with
other test runs). ``initdb`` refuses to run as root, so as root every command runs as the
``postgres`` user (``runuser -u postgres --``) and ``root`` is handed to it. Durability is off
(``fsync``, ``synchronous_commit``, ``full_page_writes``): a test cluster never outlives a crash.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg


def stop_orphans(parent: Path | None = None) -> None:
    """Stop and remove test clusters whose owning process is gone (a test run killed by a timeout
    never reaches its teardown, and pg_ctl's server outlives it)."""
    bin_dir = postgres_bin()
    for owner in (parent or Path(tempfile.gettempdir())).glob("sidecar-pg-*/owner"):
        try:
            os.kill(int(owner.read_text()), 0)
            continue  # its owner still runs
        except ProcessLookupError:
            pass
        except (ValueError, OSError):
            continue
        root = owner.parent
        if bin_dir is not None and (root / "data" / "postmaster.pid").exists():
            runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run([*runner, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    def __init__(self, root: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.data = root / "data"
        self.extra = extra
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = bin_dir
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.root}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "owner").write_text(str(os.getpid()))  # stop_orphans stops it if this process dies
        if self._as:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-o", self._options(), "start")
        return self

    def _options(self) -> str:
        return " ".join(["-k", str(self.root), "-c", "listen_addresses=''", "-c", "fsync=off",
                         "-c", "synchronous_commit=off", "-c", "full_page_writes=off", *self.extra])

    def restart(self) -> None:
        """Stop (``fast``: every session is ended, as in a real restart) and start again, same data."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-m", "fast", "-o", self._options(), "restart")

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
