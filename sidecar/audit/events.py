"""Audit events as values: the categories, building an event, scrubbing secrets out of it.

An event is a plain dict (the shape of API.md's Security section): ``id``, ``time``,
``location``, ``chain``, ``employee``, ``action``, ``category``, ``outcome``, ``object``,
``device``, ``ip``, ``request_id``, ``details``, and (issue 15) ``employee_name``: the display
name the employee had when the event was recorded (null: no name, or unknown then). Events
written before issue 15 have no ``employee_name``; readers treat it as null. Values under keys
that look like tokens, codes or passwords in caller-supplied dicts are replaced by
``[redacted]`` before anything is written.

Imports: ``sidecar.policy.times`` only (pure but for the pool of random event ids).
"""

from __future__ import annotations

import functools
import os
import re
import threading
from typing import Any

from sidecar.policy.times import now_rfc3339

CATEGORIES = ("login", "export", "edit", "delete", "access", "security")
REDACTED = "[redacted]"
_SECRET_WORDS = ("token", "code", "password", "passwd", "secret", "otp", "authorization", "cookie",
                 "api_key", "apikey", "credential", "private_key")
ACTION_NAME = re.compile(r"[A-Za-z0-9:._-]{1,64}")  # an action as reported or filtered on
FIELD_LIMIT = 512
DEVICE_FIELDS = ("id", "name", "platform", "user_agent")
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_IDS_PER_DRAW = 256
_ids: list[str] = []
_ids_lock = threading.Lock()


def as_uuid4_hex(bits: int) -> str:
    """128 random bits shaped like ``uuid.uuid4().hex`` (version and variant bits set)."""
    return f"{bits & _UUID4_CLEAR | _UUID4_SET:032x}"


def new_event_id() -> str:
    """A fresh event id: ``uuid.uuid4().hex``'s shape and randomness (``os.urandom``), drawn 256 at a time.

    ``uuid4`` makes one ``getrandom`` call per id, and a system call releases the GIL: under a
    threaded server, a thread switch on the path of every critical check. Redis deduplicates
    events by id, so ids must never repeat across processes: a forked child starts an empty pool.
    """
    with _ids_lock:
        if not _ids:
            raw = os.urandom(16 * _IDS_PER_DRAW)
            _ids.extend(as_uuid4_hex(int.from_bytes(raw[i:i + 16], "big")) for i in range(0, len(raw), 16))
        return _ids.pop()


def _empty_pool_in_child() -> None:
    global _ids_lock
    _ids_lock = threading.Lock()  # another thread may have held it at the fork
    _ids.clear()


os.register_at_fork(after_in_child=_empty_pool_in_child)


def new_event(*, category: str, action: str, outcome: str, employee: str | None, location: str | None,
              chain: str | None, object: dict[str, Any] | None, device: dict[str, Any] | None,
              ip: str | None, request_id: str | None, details: dict[str, Any] | None,
              employee_name: str | None = None) -> dict[str, Any]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown audit category {category!r}; one of {', '.join(CATEGORIES)}")
    return {"id": new_event_id(), "time": now_rfc3339(), "location": location, "chain": chain,
            "employee": employee, "employee_name": employee_name, "action": action, "category": category,
            "outcome": outcome,
            "object": scrub(object), "device": scrub(device), "ip": ip, "request_id": request_id,
            "details": scrub(details)}


def scrub(value: Any) -> Any:
    """A copy with every value under a secret-looking key replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {k: REDACTED if _secret_name(str(k)) else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


@functools.lru_cache(maxsize=4096)
def category_of(action: str) -> str:
    """The category of a right (``resource:action``) or of an upstream service's action name."""
    resource, _, verb = action.lower().partition(":")
    if verb:  # a right, or named like one
        return ("export" if verb == "export" else "delete" if verb == "delete" else "login" if resource == "login"
                else "access" if resource in ("access", "employee", "role", "membership", "chain_membership")
                else "security" if resource in ("security", "security_log", "token", "mfa") else "edit")
    words = set(action.lower().replace(".", " ").replace("_", " ").replace("-", " ").split())
    for category, markers in (("export", {"export"}), ("delete", {"delete"}),
                              ("login", {"login", "logout", "mfa", "password", "device", "session"}),
                              ("security", {"security", "token", "2fa"}),
                              ("access", {"access", "employee", "role", "membership", "activation"})):
        if words & markers:
            return category
    return "edit"


def short_text(value: Any) -> str | None:
    """A non-empty string cut to the field limit; anything else is None."""
    return value[:FIELD_LIMIT] if isinstance(value, str) and value else None


def contract_device(value: Any) -> dict[str, Any] | None:
    """A check's ``context.device``: only the contract's fields, as short strings.

    Anything else a caller sends is dropped: a batch of 100 critical checks would otherwise copy
    a large client-supplied value 100 times into Redis and the logs.
    """
    if not isinstance(value, dict):
        return None
    return {k: v[:FIELD_LIMIT] for k in DEVICE_FIELDS if isinstance(v := value.get(k), str)}
