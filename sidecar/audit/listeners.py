"""The runtime's listeners that turn checks and directory writes into audit events.

:class:`CheckEvents` (``Runtime.after_check``): each decision on a right the catalogue flags
``critical`` becomes an event, journaled (see :mod:`sidecar.audit`). :class:`WriteEvents`
(``Runtime.after_write``): each committed directory write becomes an event in every tenant it
touched, recorded before the write is answered. The runtime subscribes both.

Imports: :mod:`sidecar.audit.auditor`, :mod:`sidecar.audit.events`, policy and store values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from sidecar.audit.auditor import Auditor
from sidecar.audit.events import category_of, contract_device, new_event, new_event_id, short_text
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.records import CheckRecord, WriteRecord
from sidecar.policy.tenant import NO_TENANT, Tenant
from sidecar.policy.times import now_rfc3339
from sidecar.store.replica import Replica

log = structlog.get_logger("sidecar.audit")


class CheckEvents:
    """``after_check``: journal an event per critical decision, in the log of the engine that decided."""

    def __init__(self, auditor: Auditor, bundle: Callable[[], PolicyBundle], replica: Replica) -> None:
        self.auditor = auditor
        self.bundle = bundle
        self.replica = replica

    def __call__(self, record: CheckRecord) -> None:
        critical_rights = self.bundle().catalogue.critical
        critical = [pair for pair in record.decisions if pair[0].right in critical_rights]
        if not critical:
            return
        engine = self.replica.engine_for_location(record.location)  # the one the decision used
        if engine is not None:
            directory = engine.directory
            log_id: str | None = directory.tenant
            chain = directory.chain.id if directory.chain else None
            person = directory.employees.get(record.employee)
            name = person.name if person is not None else None  # from memory: the name the decision saw
        else:
            log_id = chain = name = None
        context = record.context
        device = contract_device(context.get("device"))
        ip = short_text(context.get("ip"))
        request_id = short_text(context.get("request_id")) or record.request_id
        mfa = bool(context.get("mfa", False))
        at = now_rfc3339()
        # Built here rather than by new_event (no scrub): every field but device is the sidecar's
        # own, contract_device keeps only the contract's device fields, and category_of always
        # names a category. ``chain`` is the log's chain, as Auditor.journal requires.
        events = [{"id": new_event_id(), "time": at, "location": record.location, "chain": chain,
                   "employee": record.employee, "employee_name": name, "action": d.right,
                   "category": category_of(d.right),
                   "outcome": "allowed" if d.allowed else "denied", "object": None,
                   "device": device, "ip": ip, "request_id": request_id,
                   "details": {"decision_id": decision_id, "reason": d.reason, "source": record.source,
                               "mfa": mfa}}
                  for d, decision_id in critical]
        if log_id is None:  # an unknown location has no Security section: the log line only
            for event in events:
                log.info("audit", **event, log=None, stored_in="none", hash=None)
            return
        self.auditor.journal(log_id, events)


class WriteEvents:
    """``after_write``: record an ``access`` event in every tenant the write touched."""

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor

    def __call__(self, record: WriteRecord) -> None:
        verb = "create" if record.before is None else "delete" if record.after is None else "update"
        details = {"before": record.before, "after": record.after, "revision": record.revision,
                   "subject": record.subject, "service": record.service}
        subject = record.subject.get("employee")
        if subject is not None:  # whose access changed, by the name they had then
            written = record.after or record.before or {}  # an employee write carries the record itself
            details["subject_name"] = (written.get("name") if record.kind == "employee"
                                       else self.auditor.name_of(subject))
        actor_name = self.auditor.name_of(record.actor)  # the event's employee is the actor

        def event(location: str | None, chain: str | None) -> dict[str, Any]:
            return new_event(category="access", action=f"{record.kind}:{verb}", outcome="success",
                             employee=record.actor, location=location, chain=chain,
                             object={"type": record.kind, "id": "/".join(record.subject.values())},
                             device=None, ip=None, request_id=record.request_id, details=details,
                             employee_name=actor_name)

        items: list[tuple[str | None, dict[str, Any]]] = []
        for tenant in record.tenants:
            if tenant == NO_TENANT:
                continue
            where = Tenant.parse(tenant)
            location = record.subject.get("location") or (where.id if not where.is_chain else None)
            items.append((where, event(location, where.id if where.is_chain else None)))
        if items:
            self.auditor.record(items)
        else:  # e.g. an employee who is a member nowhere: no Security section shows it
            log.info("audit", **event(None, None), log=None, stored_in="none", hash=None)
