"""The email channel: one plain-text message with the code, sent through SMTP (smtplib).

``SIDECAR_SMTP_URL`` says where and how::

    smtp://[user:password@]host[:port][?starttls=true][&from=addr][&cafile=/path/ca.pem]
    smtps://[user:password@]host[:port][?from=addr][&cafile=...]     (implicit TLS)

``starttls=true`` upgrades the plain connection before anything else is said; credentials in
the URL (percent-encoded) are used with ``LOGIN``/``PLAIN`` after that. TLS verifies the server
against the system CAs, or ``cafile``. The sender is ``from`` (default ``no-reply@<host>``).
SMTP and socket failures become :class:`ChannelUnavailable` (503); the code is never logged.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from sidecar.errors import ChannelUnavailable

log = structlog.get_logger("sidecar.mfa.email")
TIMEOUT_S = 10.0
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "no-reply@localhost"
    cafile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("the SMTP URL must look like smtp://[user:pass@]host[:port]")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=not implicit and query.get("starttls", "").lower() in _TRUE,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            sender=query.get("from") or f"no-reply@{parts.hostname}",
            cafile=query.get("cafile"),
        )

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


@dataclass(frozen=True)
class CodeMessage:
    """What the email says: the product, the code, who is asking (device, IP) and until when."""

    product: str
    recipient: str
    code: str
    device: str
    ip: str
    expires_at: str
    minutes: int

    def render(self, sender: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = self.recipient
        message["Subject"] = f"Your {self.product} sign-in code"
        message.set_content(
            f"Your {self.product} sign-in code is: {self.code}\n"
            "\n"
            f"Someone is signing in to {self.product} with your account and was asked for a second step.\n"
            f"  Device:     {self.device}\n"
            f"  IP address: {self.ip}\n"
            "\n"
            f"The code works once and expires in {self.minutes} minutes ({self.expires_at}).\n"
            "If this was not you, do not share the code with anyone and tell your administrator.\n"
        )
        return message


class EmailChannel:
    def __init__(self, target: SmtpTarget) -> None:
        self.target = target

    def send(self, message: CodeMessage) -> None:
        try:
            email = message.render(self.target.sender)
            with self._connect() as smtp:
                if self.target.username is not None:
                    smtp.login(self.target.username, self.target.password or "")
                smtp.send_message(email)
        except (smtplib.SMTPException, OSError, ValueError) as exc:  # ValueError: an address email refuses
            log.warning("mfa_email_failed", host=self.target.host, port=self.target.port,
                        error_type=type(exc).__name__)
            raise ChannelUnavailable("the code could not be sent: the SMTP server refused or is unreachable",
                                     channel="email") from exc

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        if target.implicit_tls:
            return smtplib.SMTP_SSL(target.host, target.port, timeout=TIMEOUT_S, context=target.tls_context())
        smtp = smtplib.SMTP(target.host, target.port, timeout=TIMEOUT_S)
        try:
            if target.starttls:
                smtp.starttls(context=target.tls_context())
        except BaseException:
            smtp.close()
            raise
        return smtp
