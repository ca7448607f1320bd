"""What the core tells its listeners: a finished check, a committed directory write.

The runtime publishes these values (``Runtime.checked`` / ``Runtime.written``); the audit trail
and the seat recorder subscribe. They are plain values, so the features that consume them need
not import the runtime or the web layer.

Imports: :mod:`sidecar.policy.decisions` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sidecar.policy.decisions import Decision


@dataclass(frozen=True)
class CheckRecord:
    """What a finished check was about: handed to ``Runtime.after_check`` listeners (audit)."""

    employee: str
    location: str
    decisions: list[tuple[Decision, str]]  # (decision, decision_id)
    context: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    source: str = "check"  # check | batch | forward_auth


@dataclass(frozen=True)
class WriteRecord:
    """A committed directory write: handed to ``Runtime.after_write`` listeners (audit, seats)."""

    kind: str  # employee | chain | location | membership | chain_membership | role
    subject: dict[str, str]
    revision: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    tenants: tuple[str, ...]
    actor: str | None
    request_id: str | None = None
    service: str | None = None  # the name of the token that made the write
