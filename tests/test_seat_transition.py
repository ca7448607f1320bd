"""The transition report (issue 14): paid under the legacy terms (services only) and now."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.policy.seat_transition import transition
from sidecar.policy.seats import SeatCounter
from tests.test_billing_api import build
from tests.test_seats import CHAIN, L1, WORKED, directory

TRANSITION = "/v1/billing/seats/transition"


def test_the_worked_examples_before_and_after() -> None:
    report = transition(SeatCounter(WORKED, "announced"), CHAIN)
    got = {e.employee: (e.paid_legacy, e.paid) for e in report.employees}
    assert got == {"boss": (False, False), "admin": (False, True), "cc": (False, True), "acct": (False, True),
                   "mkt": (False, False), "stylist": (True, True)}
    assert (report.legacy_paid_seats, report.paid_seats) == (1, 4)
    assert report.changed == ["acct", "admin", "cc"]


def test_an_owner_who_provides_services_was_and_is_paid() -> None:
    engine = directory(chain_members=[{"employee": "boss", "roles": ["owner"]}],
                       members=[{"location": "l-1", "employee": "boss", "roles": [], "provides_services": True}])
    (boss,) = transition(SeatCounter(engine, "announced"), L1).employees
    assert (boss.paid_legacy, boss.paid, boss.reasons[0]) == (True, True, "provides_services")


def test_inactive_people_were_free_and_are_free() -> None:
    engine = directory(members=[{"location": "l-1", "employee": "x", "roles": [], "provides_services": True}],
                       inactive=("x",))
    (x,) = transition(SeatCounter(engine, "announced"), CHAIN).employees
    assert (x.paid_legacy, x.paid, x.reasons) == (False, False, ("inactive",))


def test_the_route_answers_the_documented_shape(api: Any) -> None:
    revision = build(api)
    response = api.get(f"{TRANSITION}?chain=ch-1", scope="billing")
    assert response.status_code == 200
    body = response.get_json()
    assert {"legacy_paid_seats", "paid_seats", "employees", "revision"} <= set(body)
    assert (body["legacy_paid_seats"], body["paid_seats"], body["revision"]) == (1, 4, revision)
    assert body["employees"][0] == {"employee": "acct", "paid_legacy": False, "paid": True,
                                    "reasons": ["right:payment:process"]}
    location = api.get(f"{TRANSITION}?location=l-2&rule=writes", scope="billing").get_json()
    assert location["scope"] == {"location": "l-2"} and location["rule"] == "writes"


@pytest.mark.parametrize(("query", "scope", "status"), [
    ("chain=ch-1", "admin", 403), ("chain=ch-1", None, 401), ("", "billing", 400), ("chain=nope", "billing", 404),
    ("chain=ch-1&location=l-1", "billing", 400), ("location=bad%20id", "billing", 400),
])
def test_the_route_refuses_with_json(api: Any, query: str, scope: str | None, status: int) -> None:
    build(api)
    response = api.get(f"{TRANSITION}?{query}", scope=scope)
    assert response.status_code == status and "error" in response.get_json()
