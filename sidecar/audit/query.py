"""The read side of the audit trail: which events of a log the Security section shows.

Imports: :mod:`sidecar.audit.archiver` (the merge of Redis and the archive), the stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sidecar.audit.archiver import newest_first
from sidecar.store.audit_archive import ArchiveStore, Filters
from sidecar.store.audit_log import AuditLog

# Stream ids are Redis's clock at append; an event's time is its replica's clock at emit. A
# ``since`` filter stops scanning this far below ``since`` so clock skew cannot hide an event.
SKEW_MARGIN_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class Query:
    category: str | None = None
    employee: str | None = None
    action: str | None = None
    location: str | None = None
    since: str | None = None  # normalised RFC 3339 UTC, the events' own format
    until: str | None = None
    since_ms: int | None = None
    cursor: str | None = None
    exclude: tuple[str, ...] = ()  # actions left out, e.g. security_log:read (the viewers' own page views)

    def matches(self, event: dict[str, Any]) -> bool:
        return ((self.category is None or event.get("category") == self.category)
                and (self.employee is None or event.get("employee") == self.employee)
                and (self.action is None or event.get("action") == self.action)
                and event.get("action") not in self.exclude
                and (self.location is None or event.get("location") == self.location)
                and (self.since is None or event.get("time", "") >= self.since)
                and (self.until is None or event.get("time", "") <= self.until))


def search(audit_log: AuditLog, log_id: str, query: Query, *, scan_budget: int | None,
           archive: ArchiveStore | None = None, page: int | None = None) -> Iterator[dict[str, Any]]:
    """Matching events newest first, from Redis, then (once Redis holds nothing older) from the
    archive when there is one; stops after ``scan_budget`` Redis entries examined (if given).

    Each yielded event still carries ``_sid``; a final ``{"_sid": ..., "_exhausted": True}``
    marks where an exhausted budget stopped the scan. ``page``: how many events the caller wants
    (the archive's first read). Raises ArchiveUnavailable only when archived events are needed.
    """
    oldest_ms = max(0, query.since_ms - SKEW_MARGIN_MS) if query.since_ms is not None else None
    filters = Filters(category=query.category, employee=query.employee, action=query.action,
                      location=query.location, since=query.since, until=query.until, oldest_ms=oldest_ms,
                      exclude=query.exclude)
    return newest_first(audit_log, archive, log_id, before=query.cursor, oldest_ms=oldest_ms, filters=filters,
                        matches=query.matches, scan_budget=scan_budget, page=page)
