"""Helpers for the two-step tests: a real SMTP server (aiosmtpd), a movable clock, a TLS pair."""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port

CODE = re.compile(r"sign-in code is: (\d{6,})")
USER, PASSWORD = "sidecar", "s3cret pass"


class Clock:
    """The time the two-step service sees; tests move it instead of sleeping."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def move(self, seconds: float) -> None:
        self.value += seconds


@dataclass
class Inbox:
    """What the SMTP server received: parsed messages, and the logins it accepted."""

    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    url: str = ""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.tls.append(session.ssl is not None)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)

    def last_code(self) -> str:
        body = self.messages[-1].get_body(("plain",))
        assert body is not None
        match = CODE.search(body.get_content())
        assert match, "no code in the message"
        return match.group(1)


def start_smtp(inbox: Inbox, **server_kwargs: Any) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **server_kwargs)
    controller.start()
    return controller


@contextlib.contextmanager
def smtp_inbox() -> Iterator[Inbox]:
    """A real SMTP server on loopback delivering into an :class:`Inbox` (``inbox.url`` set)."""
    box = Inbox()
    controller = start_smtp(box)
    box.url = f"smtp://127.0.0.1:{controller.port}"
    try:
        yield box
    finally:
        controller.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def scan_redis(client: Any) -> list[bytes]:
    """Every key and every value in the database, whatever its type, as bytes."""
    seen: list[bytes] = []
    for key in client.scan_iter(count=1000):
        seen.append(key)
        kind = client.type(key).decode()
        if kind == "string":
            seen.append(client.get(key))
        elif kind == "hash":
            for k, v in client.hgetall(key).items():
                seen += [k, v]
        elif kind == "list":
            seen += client.lrange(key, 0, -1)
        elif kind == "set":
            seen += list(client.smembers(key))
        elif kind == "zset":
            for member, score in client.zrange(key, 0, -1, withscores=True):
                seen += [member, repr(score).encode()]
        elif kind == "stream":
            for entry_id, fields in client.xrange(key):
                seen.append(entry_id)
                for k, v in fields.items():
                    seen += [k, v]
        else:
            raise AssertionError(f"unexpected Redis type {kind} at {key!r}")
    return seen
