"""The two-step flows: start a challenge, verify a code, answer a push, register a phone.

:class:`TwoStep` is what the web layer calls. It checks the employee in the directory, sends
through the channel, and records every step in the trail. Its clock ``now`` (seconds since
the epoch) is a plain attribute so tests move time instead of sleeping. The runtime builds it.

The key of the code hashes is ``SIDECAR_MFA_SECRET``; when it is unset, a random key kept in
``<data_dir>/mfa.key`` (:mod:`sidecar.mfa.key`), never in Redis beside the hashes: a Redis read
alone must not recover a pending code. A key an older release left in Redis is deleted.

Imports: the mfa modules, the stores (Redis through them), config, errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from sidecar.config import Settings
from sidecar.errors import ChannelUnavailable, Conflict, Forbidden, InvalidCode, Locked, NotFound, Unavailable
from sidecar.mfa import codes, key
from sidecar.mfa.email import CodeMessage, EmailChannel, SmtpTarget
from sidecar.mfa.trail import Trail
from sidecar.policy.times import rfc3339
from sidecar.store.connection import Client
from sidecar.store.directory import DirectoryStore
from sidecar.store.mfa.challenges import CODE_TTL_S, Challenge, ChallengeStore, Outcome
from sidecar.store.mfa.devices import Device, DeviceStore
from sidecar.store.mfa.key import drop_legacy_key
from sidecar.store.mfa.push import PushOutbox

log = structlog.get_logger("sidecar.mfa")
_OUTCOMES = {"verified": "success", "failed": "failure", "locked": "failure", "approved": "success",
             "denied": "denied"}


def expires_at(challenge: Challenge) -> str:
    """A challenge's expiry as the API shows it: RFC 3339 UTC to the second."""
    return rfc3339(challenge.expires_at * 1000, timespec="seconds")


def describe_device(device: dict[str, str]) -> str:
    name = device.get("name") or device.get("id") or device.get("user_agent") or "an unknown device"
    platform = device.get("platform")
    return f"{name} ({platform})" if platform else name


class TwoStep:
    def __init__(self, settings: Settings, client: Client, directory: DirectoryStore, trail: Trail,
                 now: Callable[[], float] = time.time) -> None:
        self.client = client
        self.directory = directory
        self.trail = trail
        self.now = now
        self._key: str | None = settings.mfa_secret
        self._key_file = settings.data_dir / "mfa.key"
        self.product = settings.product_name
        self.challenges = ChallengeStore(client, codes.KeyedCodes(self._secret), lambda: self.now())
        self.devices = DeviceStore(client)
        self.outbox = PushOutbox(client)
        self.email = EmailChannel(SmtpTarget.from_url(settings.smtp_url)) if settings.smtp_url else None

    def _secret(self) -> str:
        if self._key is None:
            try:
                secret, created = key.load_or_create(self._key_file)
            except (OSError, ValueError) as exc:  # unreadable or damaged: refuse rather than guess
                raise Unavailable(f"the two-step key cannot be read: {exc}", reason="mfa_key") from exc
            if created:
                log.warning("mfa_key_created", path=str(self._key_file),
                            hint="replicas on other hosts need the same key: set SIDECAR_MFA_SECRET on each")
            drop_legacy_key(self.client)
            self._key = secret
        return self._key

    # -- challenges ------------------------------------------------------------------------
    def start(self, employee: str, channel: str, device: dict[str, str], ip: str | None,
              request_id: str | None = None) -> Challenge:
        person = self.directory.employee(employee)
        if person is None:
            raise NotFound(f"employee {employee} does not exist", employee=employee)
        if not person.active:
            raise Conflict(f"employee {employee} is inactive", reason="employee_inactive")
        if channel == "email":
            challenge = self._start_email(employee, person.email, device, ip)
        else:
            challenge = self._start_push(employee, device, ip)
        self.trail.record(action="mfa_challenge_sent", outcome="success", employee=employee,
                     device=device, ip=ip, object=_object(challenge), request_id=request_id,
                     details={"channel": channel, "expires_at": expires_at(challenge)})
        return challenge

    def _start_email(self, employee: str, email: str | None, device: dict[str, str], ip: str | None) -> Challenge:
        if self.email is None:
            raise ChannelUnavailable("the email channel is disabled: SIDECAR_SMTP_URL is not set",
                                     channel="email", reason="disabled")
        if not email:
            raise Conflict(f"employee {employee} has no email address", reason="no_email")
        code = codes.new_code()
        challenge = self.challenges.create(employee, "email", device, ip, code)
        message = CodeMessage(product=self.product, recipient=email, code=code, device=describe_device(device),
                              ip=ip or "unknown", expires_at=expires_at(challenge),
                              minutes=CODE_TTL_S // 60)
        try:
            self.email.send(message)
        except ChannelUnavailable:
            self.challenges.discard(challenge.id)
            raise
        return challenge

    def _start_push(self, employee: str, device: dict[str, str], ip: str | None) -> Challenge:
        phones = self.devices.all(employee)
        if not phones:
            raise Conflict(f"employee {employee} has no registered device", reason="no_registered_device")
        challenge = self.challenges.create(employee, "push", device, ip, None)
        self.outbox.publish(challenge_id=challenge.id, employee=employee, devices=phones, requesting_device=device,
                            ip=ip, expires_at=expires_at(challenge))
        return challenge

    def verify(self, challenge_id: str, code: str, request_id: str | None = None) -> Challenge:
        """Verified, or raise InvalidCode (with attempts_left), Locked, Expired, NotFound, Conflict."""
        outcome = self.challenges.verify(challenge_id, code)
        self._record(outcome, request_id)
        challenge = outcome.challenge
        if outcome.kind == "failed":
            raise InvalidCode("the code is wrong", attempts_left=challenge.attempts_left)
        if outcome.kind == "locked":
            raise Locked("too many wrong codes: the challenge is locked; ask for a new one", attempts_left=0)
        return challenge

    def answer(self, challenge_id: str, device_id: str, approve: bool, request_id: str | None = None) -> Challenge:
        """The mobile app's answer; only a device registered to the challenge's employee may give it."""
        challenge = self.challenges.get(challenge_id)
        if challenge.channel == "push" and self.devices.get(challenge.employee, device_id) is None:
            self.trail.record(action="mfa_failed", outcome="failure", employee=challenge.employee,
                         device=challenge.device, ip=challenge.ip, object=_object(challenge), request_id=request_id,
                         details={"channel": "push", "reason": "unregistered_device", "answered_by": device_id})
            raise Forbidden(f"device {device_id} is not registered to this challenge's employee",
                            reason="unregistered_device")
        outcome = self.challenges.answer(challenge_id, device_id, approve)
        self._record(outcome, request_id, answered_by=device_id)
        return outcome.challenge

    def status(self, challenge_id: str) -> dict[str, Any]:
        challenge = self.challenges.get(challenge_id)
        return {"challenge_id": challenge.id, "status": challenge.status(self.now()), "channel": challenge.channel,
                "employee": challenge.employee, "expires_at": expires_at(challenge)}

    def _record(self, outcome: Outcome, request_id: str | None, **details: str) -> None:
        challenge = outcome.challenge
        extra: dict[str, Any] = {"channel": challenge.channel, **details}
        if challenge.channel == "email":
            extra["attempts"] = challenge.attempts
        self.trail.record(action=f"mfa_{outcome.kind}", outcome=_OUTCOMES[outcome.kind],
                     employee=challenge.employee, device=challenge.device, ip=challenge.ip,
                     object=_object(challenge), request_id=request_id, details=extra)

    # -- devices ---------------------------------------------------------------------------
    def register_device(self, employee: str, device: Device, request_id: str | None = None) -> bool:
        person = self.directory.employee(employee)
        if person is None:
            raise NotFound(f"employee {employee} does not exist", employee=employee)
        if not person.active:
            raise Conflict(f"employee {employee} is inactive", reason="employee_inactive")
        created = self.devices.register(employee, device)
        self.trail.record(action="mfa_device_registered", outcome="success", employee=employee,
                     device={"id": device.id, "name": device.name, "platform": device.platform},
                     request_id=request_id, details={"replaced": not created})
        return created

    def remove_device(self, employee: str, device_id: str, request_id: str | None = None) -> None:
        if not self.devices.remove(employee, device_id):
            raise NotFound(f"employee {employee} has no device {device_id}", employee=employee, device=device_id)
        self.trail.record(action="mfa_device_removed", outcome="success", employee=employee,
                     device={"id": device_id}, request_id=request_id)


def _object(challenge: Challenge) -> dict[str, str]:
    return {"type": "mfa_challenge", "id": challenge.id}
