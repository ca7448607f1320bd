"""The email channel against a real SMTP server: plain, LOGIN, STARTTLS + LOGIN, implicit TLS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sidecar.errors import ChannelUnavailable
from sidecar.mfa.email import CodeMessage, EmailChannel, SmtpTarget
from tests.mfa_support import PASSWORD, USER, Inbox, self_signed, server_tls, start_smtp

MESSAGE = CodeMessage(product="Sidecar", recipient="ana@example.com", code="123456", device="Office laptop (web)",
                      ip="203.0.113.7", expires_at="2025-06-15T15:11:40Z", minutes=5)
CREDENTIALS = f"{USER}:{PASSWORD.replace(' ', '%20')}"


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://mail.example.com", SmtpTarget("mail.example.com", 25, sender="no-reply@mail.example.com")),
    ("smtp://u%40x:p%3Aw@mx:587?starttls=true&from=a@b.c",
     SmtpTarget("mx", 587, starttls=True, username="u@x", password="p:w", sender="a@b.c")),
    ("smtps://mx", SmtpTarget("mx", 465, implicit_tls=True, sender="no-reply@mx")),
    ("smtps://mx:2465?starttls=true&cafile=/ca.pem",
     SmtpTarget("mx", 2465, implicit_tls=True, sender="no-reply@mx", cafile="/ca.pem")),
])
def test_smtp_url_says_host_port_tls_login_and_sender(url: str, expected: SmtpTarget) -> None:
    assert SmtpTarget.from_url(url) == expected


@pytest.mark.parametrize("url", ["http://mx", "smtp://", "smtp:///path"])
def test_smtp_url_without_host_or_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="smtp://"):
        SmtpTarget.from_url(url)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@contextmanager
def serving(inbox: Inbox, **kwargs) -> Iterator[int]:
    controller = start_smtp(inbox, **kwargs)
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


def test_plain_smtp_delivers_the_message(inbox: Inbox) -> None:
    with serving(inbox) as port:
        EmailChannel(SmtpTarget.from_url(f"smtp://127.0.0.1:{port}")).send(MESSAGE)
    assert inbox.last_code() == "123456" and inbox.tls == [False]


# aiosmtpd warns when AUTH is offered without TLS; that is the point of this test server.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_login_without_tls_uses_the_url_credentials(inbox: Inbox) -> None:
    with serving(inbox, authenticator=inbox.authenticate, auth_required=True, auth_require_tls=False) as port:
        EmailChannel(SmtpTarget.from_url(f"smtp://{CREDENTIALS}@127.0.0.1:{port}")).send(MESSAGE)
    assert inbox.logins == [USER] and inbox.last_code() == "123456"


def test_starttls_then_login(inbox: Inbox, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    with serving(inbox, authenticator=inbox.authenticate, auth_required=True,
                       tls_context=server_tls(cert, key), require_starttls=True) as port:
        url = f"smtp://{CREDENTIALS}@127.0.0.1:{port}?starttls=true&cafile={cert}"
        EmailChannel(SmtpTarget.from_url(url)).send(MESSAGE)
    assert inbox.logins == [USER] and inbox.tls == [True]


def test_implicit_tls_with_smtps(inbox: Inbox, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    with serving(inbox, ssl_context=server_tls(cert, key)) as port:
        EmailChannel(SmtpTarget.from_url(f"smtps://127.0.0.1:{port}?cafile={cert}")).send(MESSAGE)
    assert inbox.last_code() == "123456"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_refused_login_becomes_channel_unavailable(inbox: Inbox) -> None:
    with (serving(inbox, authenticator=inbox.authenticate, auth_required=True, auth_require_tls=False) as port,
          pytest.raises(ChannelUnavailable)):
        EmailChannel(SmtpTarget.from_url(f"smtp://{USER}:wrong@127.0.0.1:{port}")).send(MESSAGE)
    assert inbox.messages == []


def test_untrusted_certificate_becomes_channel_unavailable(inbox: Inbox, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    with serving(inbox, tls_context=server_tls(cert, key)) as port, pytest.raises(ChannelUnavailable):
        EmailChannel(SmtpTarget.from_url(f"smtp://127.0.0.1:{port}?starttls=true")).send(MESSAGE)
    assert inbox.messages == []
