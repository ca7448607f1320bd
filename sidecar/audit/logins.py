"""New devices: the first login of an employee from a device id records ``login.new_device``.

A login is an allowed check of a ``login:*`` right (``/v1/check``, batch; forward-auth carries no
device id) whose ``context.device.id`` is set, or an event reported at ``POST /v1/audit/events`` with category
``login``, a successful outcome (``success``, ``succeeded``, ``allowed``, ``ok``) and a
``device.id``. The first time a device id is seen for that employee
(:class:`~sidecar.store.seen_devices.SeenDevices`, one ``SADD``: exactly one worker wins), an
audit event ``login.new_device`` (category ``login``; the device, its user agent and the IP;
``object`` the device) is recorded in the Security section of every chain and standalone
location where the employee is a member, as the two-step trail is. Once per device: later
logins from it record nothing more. A process remembers the pairs it has seen, so a repeated
login costs no Redis call.

A failure here never fails the login check: it is logged, and the sighting is forgotten so the
next login from that device tries again.

Imports: the auditor, audit event helpers, the stores, policy records, errors.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import structlog

from sidecar.audit.auditor import Auditor
from sidecar.audit.events import contract_device, short_text
from sidecar.errors import SidecarError
from sidecar.policy.records import CheckRecord
from sidecar.store.directory import DirectoryStore
from sidecar.store.seen_devices import SeenDevices

ACTION = "login.new_device"
SUCCESS = frozenset({"success", "succeeded", "allowed", "ok"})
_REMEMBERED = 50_000  # (employee, device) pairs a process keeps; past it the memory starts over

log = structlog.get_logger("sidecar.audit")


class NewDevices:
    """``after_check`` listener and reported-login hook that records ``login.new_device`` once per device."""

    def __init__(self, auditor: Auditor, seen: SeenDevices, directory: DirectoryStore) -> None:
        self.auditor = auditor
        self.seen = seen
        self.directory = directory
        self._known: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, record: CheckRecord) -> None:
        if not any(d.allowed and d.right.startswith("login:") for d, _ in record.decisions):
            return
        context = record.context
        self.login(record.employee, context.get("device"), short_text(context.get("ip")),
                   short_text(context.get("request_id")) or record.request_id, source=record.source,
                   location=record.location)

    def reported(self, *, category: str, action: str, outcome: str, employee: str | None, device: Any,
                 ip: str | None, request_id: str | None, location: str | None) -> list[str]:
        """A login an upstream service reported: the same rule as a login check."""
        if category != "login" or action == ACTION or outcome.lower() not in SUCCESS or employee is None:
            return []
        return self.login(employee, device, ip, request_id, source="report", location=location)

    def login(self, employee: str, device: Any, ip: str | None, request_id: str | None, *, source: str,
              location: str | None) -> list[str]:
        """Record ``login.new_device`` if this device is new for the employee; the event ids (none if not new)."""
        shown = contract_device(device)
        device_id = shown.get("id") if shown else None
        if not device_id or shown is None:
            return []
        pair = (employee, device_id)
        if pair in self._known:
            return []
        try:
            if not self.seen.first_sighting(employee, device_id):
                self._remember(pair)
                return []
            ids = [self.auditor.emit(category="login", action=ACTION, outcome="success", employee=employee,
                                     object={"type": "device", "id": device_id}, device=shown, ip=ip,
                                     request_id=request_id,
                                     details={"source": source, "location": location,
                                              "user_agent": shown.get("user_agent")}, **tenant.where())
                   for tenant in self.directory.tenants_of(employee)]
        except SidecarError as exc:
            log.warning("new_device_not_recorded", employee=employee, error=exc.message)
            with contextlib.suppress(SidecarError):
                self.seen.forget(employee, device_id)
            return []
        self._remember(pair)
        return ids

    def _remember(self, pair: tuple[str, str]) -> None:
        with self._lock:
            if len(self._known) >= _REMEMBERED:
                self._known.clear()
            self._known.add(pair)
