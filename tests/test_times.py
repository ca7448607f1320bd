"""One time module: RFC 3339 written one way, read with one strictness rule (400, never 500)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import BadRequest
from sidecar.policy.times import now_rfc3339, parse_rfc3339, rfc3339, rfc3339_fast


def test_epoch_milliseconds_are_written_in_utc() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_769_850_000_123) == "2026-01-31T09:00:00.123Z"
    assert rfc3339(1_769_850_000_999, timespec="seconds") == "2026-01-31T09:00:00Z"
    assert now_rfc3339().endswith("Z") and len(now_rfc3339()) == len("2026-01-31T09:00:00.000Z")


YEARS_1_TO_9999_MS = st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999)


@given(YEARS_1_TO_9999_MS, st.sampled_from(["milliseconds", "seconds"]))
def test_the_fast_writer_writes_what_rfc3339_writes(ms: int, timespec) -> None:
    assert rfc3339_fast(ms, timespec=timespec) == rfc3339(ms, timespec=timespec)


@pytest.mark.parametrize(("raw", "text", "ms"), [
    ("2026-01-31T09:00:00Z", "2026-01-31T09:00:00.000Z", 1_769_850_000_000),
    ("2026-01-31t09:00:00z", "2026-01-31T09:00:00.000Z", 1_769_850_000_000),  # RFC 3339 allows either case
    ("2026-01-31T10:00:00.123456789+01:00", "2026-01-31T09:00:00.123Z", 1_769_850_000_123),
    ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59.000Z", -1000),
])
def test_rfc3339_times_are_read_to_utc(raw: str, text: str, ms: int) -> None:
    assert parse_rfc3339("since", raw) == (text, ms)


@pytest.mark.parametrize("raw", [
    "yesterday", "2026-01-31", "2026-01-31T09:00:00",  # no offset
    "2026-01-31 09:00:00+00:00",  # a space where RFC 3339 has T
    "2026-01-31T09:00Z", "20260131T090000Z", "2026-01-31T09:00:00+0100", "2026-13-01T00:00:00Z",
    "2026-01-31T25:00:00Z", "٢٠٢٦-01-31T09:00:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:00",  # outside what UTC can hold
])
def test_anything_else_is_a_400_naming_the_field(raw: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_rfc3339("until", raw)
    assert raised.value.status == 400 and raised.value.details == {"field": "until"}
