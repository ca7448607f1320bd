"""D8, D10, D11, D17: bad input the report turned into a 500 (or a silent write) answers 400 or 404."""

from __future__ import annotations

from typing import Any

import pytest

from tests.audit_support import read_log, seed


@pytest.fixture
def seeded(api):
    seed(api)  # ch-1 = {l-1, l-2}, standalone l-9; boss owns ch-1
    yield api


def nested(levels: int, leaf: Any = 1, *, array: bool = False) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value] if array else {"a": value}
    return value


def post_raw(api, body: str):
    return api.client.post("/v1/audit/events", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {api.tokens['audit']}"})


# -- D8: audit details nested 255-1023 levels were a 500 -------------------------------------------
@pytest.mark.parametrize("levels", [255, 300, 1000, 1023])
@pytest.mark.parametrize("array", [False, True])
def test_deeply_nested_details_are_400(seeded, levels: int, array: bool) -> None:
    inner = levels - 1
    opening, closing = ("[" * inner, "]" * inner) if array else ('{"a":' * inner, "}" * inner)
    details = '{"a":' + opening + "1" + closing + "}"  # built as text: json.dumps would recurse too deep
    body = '{"location":"l-1","action":"x.y","outcome":"ok","details":' + details + "}"
    response = post_raw(seeded, body)
    assert response.status_code == 400, response.get_data()
    assert response.get_json()["error"]["code"] == "invalid_request"


def test_details_nested_a_little_are_accepted(seeded) -> None:
    response = seeded.post("/v1/audit/events", {"location": "l-1", "action": "x.y", "outcome": "ok",
                                               "details": nested(20)}, scope="audit")
    assert response.status_code == 202, response.get_json()


# -- D10: a cursor that matches the pattern but is no stream position was a 500 ---------------------
@pytest.mark.parametrize("cursor", ["0-0", "18446744073709551616-0", "99999999999999999999-0",
                                    "0-18446744073709551616"])
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_an_out_of_range_cursor_is_400(seeded, cursor: str, fmt: str) -> None:
    extra = "&format=csv&mfa=1" if fmt == "csv" else ""
    response = seeded.get(f"/v1/chains/ch-1/security-events?viewer=boss&cursor={cursor}{extra}", scope="security")
    assert response.status_code == 400, response.get_data()
    assert response.get_json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("cursor", ["0-1", "1-0", "18446744073709551615-18446744073709551615"])
def test_the_extreme_valid_cursors_still_answer(seeded, cursor: str) -> None:
    response = seeded.get(f"/v1/chains/ch-1/security-events?viewer=boss&cursor={cursor}", scope="security")
    assert response.status_code == 200, response.get_json()


# -- D11: a billing time at the end of the calendar was a 500 ----------------------------------------
@pytest.mark.parametrize("name", ["until", "since"])
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00%2B14:00"])
def test_a_billing_time_past_the_calendar_is_400(seeded, name: str, value: str) -> None:
    response = seeded.get(f"/v1/billing/seats/history?chain=ch-1&{name}={value}", scope="billing")
    assert response.status_code == 400, response.get_data()


def test_the_last_representable_billing_time_still_answers(seeded) -> None:
    response = seeded.get("/v1/billing/seats/history?chain=ch-1&until=9999-12-31T23:59:59Z", scope="billing")
    assert response.status_code == 200, response.get_json()


# -- D17: events for chains or locations that do not exist were stored where no one reads them ------
@pytest.mark.parametrize(("where", "log"), [({"chain": "ch-doesnotexist-1"}, "c:ch-doesnotexist-1"),
                                            ({"location": "l-doesnotexist-1"}, "l:l-doesnotexist-1")])
def test_an_event_for_an_unknown_chain_or_location_is_404_and_creates_no_log(seeded, redis_url: str,
                                                                            where: dict[str, str], log: str) -> None:
    response = seeded.post("/v1/audit/events", {**where, "action": "x.y", "outcome": "ok"}, scope="audit")
    assert response.status_code == 404, response.get_json()
    assert response.get_json()["error"]["code"] == "not_found"
    assert read_log(redis_url, log) == []


def test_an_event_naming_a_location_outside_its_chain_is_400(seeded, redis_url: str) -> None:
    response = seeded.post("/v1/audit/events", {"location": "l-9", "chain": "ch-1", "action": "x.y",
                                               "outcome": "ok"}, scope="audit")
    assert response.status_code == 400, response.get_json()
    assert not [e for e in read_log(redis_url, "c:ch-1") if e["action"] == "x.y"]


def test_an_event_for_a_known_location_lands_in_its_chains_log(seeded, redis_url: str) -> None:
    response = seeded.post("/v1/audit/events", {"location": "l-2", "action": "x.y", "outcome": "ok"}, scope="audit")
    assert response.status_code == 202, response.get_json()
    [event] = [e for e in read_log(redis_url, "c:ch-1") if e["action"] == "x.y"]
    assert event["location"] == "l-2" and event["chain"] == "ch-1"
