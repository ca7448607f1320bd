"""The two-step trail: each event is an audit event (category ``login``) in every tenant of the employee.

A tenant is a chain or a standalone location (``DirectoryStore.tenants_of``), so
the event lands in the Security section of every chain and standalone location where the
employee is a member, with the device and IP that asked. Actions: ``mfa_challenge_sent``,
``mfa_failed``, ``mfa_locked``, ``mfa_verified``, ``mfa_approved``, ``mfa_denied``,
``mfa_device_registered``, ``mfa_device_removed``. Details never carry a code.
"""

from __future__ import annotations

from typing import Any

from sidecar import metrics


def record(runtime: Any, *, action: str, outcome: str, employee: str, device: dict[str, str] | None = None,
           ip: str | None = None, object: dict[str, str] | None = None, request_id: str | None = None,
           details: dict[str, Any] | None = None) -> list[str]:
    """Emit the event once per tenant of the employee; answer the event ids."""
    from sidecar.audit import emit  # the audit module is a sibling feature; import it where it is used

    metrics.MFA_EVENTS.labels(action).inc()
    ids = []
    for tenant in runtime.directory.tenants_of(employee):
        where = tenant.where()
        ids.append(emit(runtime, category="login", action=action, outcome=outcome, employee=employee,
                        object=object, device=device or None, ip=ip, request_id=request_id, details=details,
                        **where))
    return ids
