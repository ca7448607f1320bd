"""Times on the wire: RFC 3339 in UTC, written one way and read with one strictness rule.

* :func:`rfc3339` writes epoch milliseconds as ``2026-01-31T09:00:00.000Z`` (or, with
  ``timespec="seconds"``, ``2026-01-31T09:00:00Z``); :func:`now_rfc3339` is the current time
  (through :func:`rfc3339_fast`, the same text for whole milliseconds).
* :func:`parse_rfc3339` reads what a client sends: ``full-date "T" full-time`` of RFC 3339
  section 5.6 (``T`` and ``Z`` in either case, optional fraction, an offset ``Z`` or
  ``+hh:mm``/``-hh:mm`` required). Anything else, and any time that cannot be placed in UTC,
  is a 400 naming the field, never a 500.

Pure: imports ``sidecar.errors`` only.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from sidecar.errors import BadRequest

Timespec = Literal["milliseconds", "seconds"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def rfc3339(ms: float, *, timespec: Timespec = "milliseconds") -> str:
    """Epoch milliseconds as an RFC 3339 UTC time (truncated to ``timespec``)."""
    return _format(_EPOCH + timedelta(milliseconds=ms), timespec)  # exact: no float seconds


def now_rfc3339(timespec: Timespec = "milliseconds") -> str:
    return rfc3339_fast(time.time_ns() // 1_000_000, timespec=timespec)


_second: tuple[int, str] = (-1, "")  # the last whole second formatted: its epoch and its text, sans "Z"


def rfc3339_fast(ms: int, *, timespec: Timespec = "milliseconds") -> str:
    """:func:`rfc3339` of integer epoch milliseconds, formatting each whole second once.

    The current time is read for every audit event on the path of a critical check; a datetime
    per call costs more than the rest of the event's fields together.
    """
    global _second
    second, milli = divmod(ms, 1000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, rfc3339(second * 1000, timespec="seconds")[:-1])
    return f"{cached[1]}.{milli:03d}Z" if timespec == "milliseconds" else f"{cached[1]}Z"


def parse_rfc3339(name: str, raw: str) -> tuple[str, int]:
    """The time a client sent in field ``name``: its canonical UTC text (milliseconds) and epoch ms.

    400 (``invalid_request``, ``field=name``) when it is not an RFC 3339 time with an offset or
    lies outside what UTC can hold (year 1 to 9999).
    """
    if not _RFC3339.fullmatch(raw):
        raise BadRequest(f"{name} must be an RFC 3339 time with an offset, e.g. 2026-01-31T09:00:00Z", field=name)
    fraction = re.search(r"\.(\d+)", raw)
    if fraction and len(fraction.group(1)) > 6:  # datetime holds microseconds; finer digits change nothing here
        raw = raw.replace(fraction.group(0), fraction.group(0)[:7], 1)
    try:
        moment = datetime.fromisoformat(raw.upper()).astimezone(UTC)
    except ValueError:  # a 13th month, a 25th hour, ...
        raise BadRequest(f"{name} is not a valid time", field=name) from None
    except OverflowError:  # the offset pushes it outside years 1-9999
        raise BadRequest(f"{name} is out of range", field=name) from None
    return _format(moment, "milliseconds"), _epoch_ms(moment)


def _epoch_ms(moment: datetime) -> int:
    delta = moment - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def _format(moment: datetime, timespec: Timespec) -> str:
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
