"""Shared fixtures: a real redis-server per test session, a clean database per test; an app
factory that stops every app it built; ``wait_until`` and ``free_port`` for every test."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sidecar.store.redis_server import RedisServer
from tests.postgres_support import PostgresCluster, postgres_bin, stop_orphans

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"


def wait_until(condition: Callable[[], Any], timeout_s: float = 10.0, step_s: float = 0.02,
               ignoring: tuple[type[BaseException], ...] = ()) -> bool:
    """Poll ``condition`` until it is truthy (True) or ``timeout_s`` passed (False, after one last try).

    Exceptions in ``ignoring`` count as "not yet"; any other one (e.g. an assertion that a
    process is still alive) ends the wait at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return True
        except ignoring:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (other tests run beside these)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    # No AOF for the shared test server: an fsync per write is what durability tests measure on
    # servers of their own, and here it would only slow every test down.
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()



# -- PostgreSQL (the audit archive) ------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One private cluster per session (see tests/postgres_support.py); skipped without PostgreSQL."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs the postgresql package)")
    stop_orphans()  # clusters of earlier runs that were killed before their teardown
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="sidecar-pg-"))).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = postgres_cluster.create_database()
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)

# -- the app ---------------------------------------------------------------------------------
def _share_url_builders() -> None:
    """Compile each URL rule's builders once per test process, not once per app.

    werkzeug compiles two builder functions (Python source generated per rule) for every rule of
    every app: about 13 ms of the ~30 ms a test app takes to build. A builder is a function of its
    rule alone (the rule's text, its parsed parts, whether unknown arguments are appended): it
    takes the rule as its first argument, so rules of equal text share one. Rules with defaults
    (none in the sidecar) are compiled as before; nothing else about the apps changes (and the
    sidecar builds no URLs). Without the private hook (another werkzeug), nothing is shared.
    """
    from werkzeug.routing.rules import Rule

    compile_builder = getattr(Rule, "_compile_builder", None)
    if compile_builder is None:
        return
    builders: dict[tuple[str, tuple[tuple[bool, str], ...], bool], Any] = {}

    def shared_builder(self: Rule, append_unknown: bool = True) -> Any:
        if self.defaults:
            return compile_builder(self, append_unknown)
        key = (self.rule, tuple(self._trace), append_unknown)
        builder = builders.get(key)
        if builder is None:
            builder = builders[key] = compile_builder(self, append_unknown)
        return builder

    Rule._compile_builder = shared_builder  # type: ignore[method-assign]


_share_url_builders()


def _share_policy_bundles() -> None:
    """Every test app's runtime loads ``policies/``: load each content once per test process.

    A bundle is a value made from the directory's four files (their text, and their sizes and
    mtimes for its fingerprint and version); the same files give the same bundle, so a runtime is
    handed the one made before. A test that edits its copy of the policies, or breaks a file,
    loads for real (a failed load is not kept). ``load_bundle`` itself is unchanged and tested.
    """
    import sidecar.runtime
    from sidecar.policy.bundle import POLICY_FILES, PolicyBundle, fingerprint, load_bundle, version_of

    bundles: dict[tuple[Any, ...], PolicyBundle] = {}

    def key_of(directory: Path) -> tuple[Any, ...] | None:
        try:
            texts = [(directory / name).read_bytes() for name in POLICY_FILES]
        except OSError:
            return None
        return (directory, fingerprint(directory), version_of(directory), *texts)

    def shared_bundle(directory: Path) -> PolicyBundle:
        directory = directory.resolve()
        key = key_of(directory)
        bundle = bundles.get(key) if key is not None else None
        if bundle is None:
            bundle = load_bundle(directory)  # a missing or broken file raises, as always
            if key is not None and key_of(directory) == key:  # not edited meanwhile
                bundles[key] = bundle
        return bundle

    sidecar.runtime.load_bundle = shared_bundle  # type: ignore[assignment]


_share_policy_bundles()

from sidecar.app import create_app  # noqa: E402  # fixtures above need no app
from sidecar.config import Settings  # noqa: E402
from sidecar.tokens import SCOPES, TokenFile  # noqa: E402


class Api:
    """A test client that carries a token per scope: ``api.put(path, json, scope="admin")``."""

    def __init__(self, app, tokens: dict[str, str]) -> None:
        self.app = app
        self.client = app.test_client()
        self.tokens = tokens

    def call(self, method: str, path: str, json=None, scope: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if scope is not None:
            headers["Authorization"] = f"Bearer {self.tokens[scope]}"
        return self.client.open(path, method=method, json=json, headers=headers, **kwargs)

    def get(self, path, scope=None, **kw):
        return self.call("GET", path, scope=scope, **kw)

    def put(self, path, json=None, scope="admin", **kw):
        return self.call("PUT", path, json=json, scope=scope, **kw)

    def post(self, path, json=None, scope=None, **kw):
        return self.call("POST", path, json=json, scope=scope, **kw)

    def delete(self, path, scope="admin", **kw):
        return self.call("DELETE", path, scope=scope, **kw)

    def check(self, employee, location, right, **extra):
        resource, action = right.split(":", 1)
        body = {"employee": employee, "location": location, "resource": resource, "action": action, **extra}
        response = self.post("/v1/check", body, scope="check")
        assert response.status_code == 200, response.get_json()
        return response.get_json()


def make_settings(tmp_path: Path, **overrides) -> Settings:
    values = {"data_dir": tmp_path, "policy_dir": POLICY_DIR, "tokens_file": tmp_path / "tokens.json",
              "log_format": "json", **overrides}
    return Settings(**values)


_made_tokens: tuple[bytes, dict[str, str]] | None = None  # this test process's: the file and its tokens


def make_tokens(settings: Settings) -> dict[str, str]:
    """A token per scope (``only-<scope>``) and ``all``, in a new ``settings.tokens_path``.

    The first call in a test process creates them with ``TokenFile.create`` (a locked, fsynced
    write each); later calls write a copy of that file, so every test has its own tokens file
    without a write per token. Onto an existing file they are created one by one, as before.
    """
    global _made_tokens
    path = settings.tokens_path
    if _made_tokens is not None and not path.exists():
        content, made = _made_tokens
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o600)  # as TokenFile writes it
        return dict(made)
    first = not path.exists()
    tokens = TokenFile(path)
    made = {scope: tokens.create(f"only-{scope}", [scope]) for scope in SCOPES}
    made["all"] = tokens.create("all", list(SCOPES))
    if first:
        _made_tokens = (path.read_bytes(), dict(made))
    return made


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, tmp_path: Path) -> None:
    """The environment an in-process ``sidecar.cli.main`` call reads: this test's Redis and data dir."""
    monkeypatch.setenv("SIDECAR_REDIS_URL", redis_url)
    monkeypatch.setenv("SIDECAR_POLICY_DIR", str(POLICY_DIR))
    monkeypatch.setenv("SIDECAR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIDECAR_LOG_FORMAT", "json")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def app_factory(redis_url: str):
    """Builds apps (``app_factory(settings, start=True, redis_url=...)``); stops every one it built."""
    built = []

    def build(settings: Settings, *, start: bool = True, redis_url: str = redis_url):
        application = create_app(settings, redis_url=redis_url, start=start)
        built.append(application)
        return application

    yield build
    for application in reversed(built):
        application.extensions["sidecar"].stop()


@pytest.fixture
def app(settings: Settings, app_factory):
    return app_factory(settings)


@pytest.fixture
def api(app, settings: Settings) -> Api:
    return Api(app, make_tokens(settings))
