"""The two-step trail: each event is an audit event (category ``login``) in every tenant of the employee.

A tenant is a chain or a standalone location (``DirectoryStore.tenants_of``), so the event
lands in the Security section of every chain and standalone location where the employee is a
member, with the device and IP that asked. Actions: ``mfa_challenge_sent``, ``mfa_failed``,
``mfa_locked``, ``mfa_verified``, ``mfa_approved``, ``mfa_denied``, ``mfa_device_registered``,
``mfa_device_removed``. Details never carry a code.

Imports: :mod:`sidecar.audit`, the directory store, policy values, metrics.
"""

from __future__ import annotations

from typing import Any

from sidecar import metrics
from sidecar.audit import Auditor
from sidecar.store.directory import DirectoryStore


class Trail:
    def __init__(self, auditor: Auditor, directory: DirectoryStore) -> None:
        self.auditor = auditor
        self.directory = directory

    def record(self, *, action: str, outcome: str, employee: str, device: dict[str, str] | None = None,
               ip: str | None = None, object: dict[str, str] | None = None, request_id: str | None = None,
               details: dict[str, Any] | None = None) -> list[str]:
        """Emit the event once per tenant of the employee; answer the event ids."""
        metrics.MFA_EVENTS.labels(action).inc()
        return [self.auditor.emit(category="login", action=action, outcome=outcome, employee=employee,
                                  object=object, device=device or None, ip=ip, request_id=request_id,
                                  details=details, **tenant.where())
                for tenant in self.directory.tenants_of(employee)]
