"""Seat counting in memory (sidecar.policy.seats): DOMAIN.md's worked examples and edge cases."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sidecar.api.billing import parse_changes
from sidecar.cli import render_table
from sidecar.errors import BadRequest, InvalidId, NotFound, UnknownRight, UnknownRole
from sidecar.policy.bundle import load_bundle
from sidecar.policy.directory import Employee
from sidecar.policy.engine import TenantEngine
from sidecar.policy.seat_preview import preview
from sidecar.policy.seats import Scope, SeatCounter, count_seats
from sidecar.policy.suites import build_directories

BUNDLE = load_bundle(Path(__file__).resolve().parent.parent / "policies")
CHAIN = Scope("chain", "ch-1")
L1, L2, L3 = Scope("location", "l-1"), Scope("location", "l-2"), Scope("location", "l-3")


def directory(*, owner: str | None = "boss", members: Sequence[dict[str, Any]] = (),
              chain_members: Sequence[dict[str, Any]] = (), roles: Sequence[dict[str, Any]] = (),
              inactive: tuple[str, ...] = (), location_owner: str | None = None) -> TenantEngine:
    """Chain ch-1 with l-1, l-2, l-3; ``boss`` holds owner chain-wide unless told otherwise."""
    people = {m["employee"] for m in [*members, *chain_members]}
    spec = {
        "chains": [{"id": "ch-1", "owner": owner}],
        "locations": [{"id": "l-1", "chain": "ch-1", "owner": location_owner},
                      {"id": "l-2", "chain": "ch-1"}, {"id": "l-3", "chain": "ch-1"}],
        "employees": [{"id": e, "active": e not in inactive} for e in sorted(people)],
        "memberships": list(members),
        "chain_memberships": [{"chain": "ch-1", **m} for m in chain_members],
        "roles": list(roles),
    }
    return TenantEngine(BUNDLE, build_directories(spec, BUNDLE)["c:ch-1"])


BOSS = {"employee": "boss", "roles": ["owner"]}


def seat(engine: TenantEngine, scope: Scope, employee: str, rule: str = "announced") -> tuple[bool, list[str]] | None:
    found = [s for s in count_seats(engine, scope, rule).seats if s.employee == employee]
    return (found[0].paid, list(found[0].reasons)) if found else None


# -- DOMAIN.md "Seats", the worked examples -------------------------------------------------
WORKED = directory(
    chain_members=[BOSS, {"employee": "cc", "roles": ["call_center"]}],
    members=[
        {"location": "l-1", "employee": "admin", "roles": ["administrator"]},
        {"location": "l-2", "employee": "admin", "roles": ["administrator"]},
        {"location": "l-2", "employee": "acct", "roles": ["accountant"], "allow": ["payment:process"]},
        {"location": "l-1", "employee": "mkt", "roles": ["marketer"]},
        {"location": "l-1", "employee": "stylist", "roles": [], "provides_services": True},
    ],
)


@pytest.mark.parametrize(("employee", "paid", "reasons"), [
    ("boss", False, ["owner_exempt"]),
    ("admin", True, ["right:appointment:create", "right:deposit:topup", "right:payment:process"]),
    ("cc", True, ["right:appointment:create"]),
    ("acct", True, ["right:payment:process"]),
    ("mkt", False, ["no_billable_rights"]),
    ("stylist", True, ["provides_services"]),
])
def test_worked_examples_of_the_chain(employee: str, paid: bool, reasons: list[str]) -> None:
    assert seat(WORKED, CHAIN, employee) == (paid, reasons)


def test_a_chain_counts_each_person_once() -> None:
    seats = count_seats(WORKED, CHAIN, "announced")
    assert (seats.paid_seats, seats.free_seats) == (4, 2)
    assert [s.employee for s in seats.seats] == sorted({s.employee for s in seats.seats})


@pytest.mark.parametrize(("scope", "paid", "free"), [
    (L1, {"admin", "cc", "stylist"}, {"boss", "mkt"}),
    (L2, {"admin", "cc", "acct"}, {"boss"}),
    (L3, {"cc"}, {"boss"}),
])
def test_a_location_counts_its_members_and_the_chain_wide_ones(scope: Scope, paid: set[str], free: set[str]) -> None:
    seats = count_seats(WORKED, scope, "announced")
    assert seats.paid == paid
    assert {s.employee for s in seats.seats if not s.paid} == free


# -- the owner exemption ---------------------------------------------------------------------
@pytest.mark.parametrize(("case", "engine", "expected"), [
    ("two owners, none designated: both paid",
     directory(owner=None, chain_members=[BOSS, {"employee": "co", "roles": ["owner"]}]),
     {"boss": True, "co": True}),
    ("two owners, one designated: the other is paid",
     directory(owner="co", chain_members=[BOSS, {"employee": "co", "roles": ["owner"]}]),
     {"boss": True, "co": False}),
    ("the only owner, none designated, is exempt",
     directory(owner=None, chain_members=[BOSS]), {"boss": False}),
    ("an owner who provides services is paid",
     directory(chain_members=[BOSS], members=[{"location": "l-1", "employee": "boss", "roles": [],
                                               "provides_services": True}]), {"boss": True}),
    ("a designated administrator is billed like anyone (issue 14)",
     directory(owner="admin", chain_members=[], members=[{"location": "l-1", "employee": "admin",
                                                          "roles": ["administrator"]}]), {"admin": True}),
    ("a designated administrator beside the only owner: nobody is exempt (designated wins)",
     directory(owner="admin", chain_members=[BOSS], members=[{"location": "l-1", "employee": "admin",
                                                              "roles": ["administrator"]}]),
     {"admin": True, "boss": True}),
    ("two owners, one providing services, none designated: the other is the only such holder",
     directory(owner=None, chain_members=[BOSS, {"employee": "co", "roles": ["owner"]}],
               members=[{"location": "l-1", "employee": "co", "roles": [], "provides_services": True}]),
     {"boss": False, "co": True}),
    ("an inactive designated owner is not exempt (and is free as inactive)",
     directory(owner="boss", chain_members=[BOSS], inactive=("boss",)), {"boss": False}),
    ("an inactive owner does not count as the second owner",
     directory(owner=None, chain_members=[BOSS, {"employee": "old", "roles": ["owner"]}], inactive=("old",)),
     {"boss": False, "old": False}),
    ("a custom role inheriting owner is an owner's assignment: the only one is exempt",
     directory(owner=None, chain_members=[{"employee": "boss", "roles": ["founder"]}],
               roles=[{"chain": "ch-1", "role": "founder", "rights": [], "inherits": ["owner"]}]), {"boss": False}),
    ("a custom role inheriting owner makes a second owner: nobody is exempt",
     directory(owner=None, chain_members=[BOSS, {"employee": "co", "roles": ["founder"]}],
               roles=[{"chain": "ch-1", "role": "founder", "rights": [], "inherits": ["owner"]}]),
     {"boss": True, "co": True}),
    ("a custom role inheriting owner two levels down still counts",
     directory(owner=None, chain_members=[{"employee": "boss", "roles": ["top"]}],
               roles=[{"chain": "ch-1", "role": "founder", "rights": [], "inherits": ["owner"]},
                      {"chain": "ch-1", "role": "top", "rights": [], "inherits": ["founder"]}]), {"boss": False}),
    ("a manager is not an owner: the only owner stays exempt",
     directory(owner=None, chain_members=[BOSS, {"employee": "mgr", "roles": ["manager"]}]),
     {"boss": False, "mgr": True}),
])
def test_owner_exemption_in_the_chain(case: str, engine: TenantEngine, expected: dict[str, bool]) -> None:
    assert {e: seat(engine, CHAIN, e)[0] for e in expected} == expected, case  # type: ignore[index]


def test_a_designated_administrator_is_paid_for_their_rights() -> None:
    engine = directory(owner="admin", chain_members=[], members=[
        {"location": "l-1", "employee": "admin", "roles": ["administrator"]}])
    assert seat(engine, CHAIN, "admin") == (True, ["right:appointment:create", "right:deposit:topup",
                                                   "right:payment:process"])
    assert seat(engine, L1, "admin") == seat(engine, CHAIN, "admin")


@pytest.mark.parametrize("scope", [CHAIN, L1, L2, L3])
def test_the_chain_owner_is_exempt_at_each_location_of_the_chain(scope: Scope) -> None:
    """The chain's designated owner is the designated owner of every location without its own."""
    assert seat(WORKED, scope, "boss") == (False, ["owner_exempt"])


def test_a_location_with_its_own_owner_inside_a_chain() -> None:
    engine = directory(owner="boss", location_owner="lo", chain_members=[BOSS],
                       members=[{"location": "l-1", "employee": "lo", "roles": ["owner"]}])
    assert seat(engine, L1, "lo") == (False, ["owner_exempt"])
    assert seat(engine, L1, "boss")[0] is True  # type: ignore[index]  # not the designated owner of l-1
    assert seat(engine, L2, "boss") == (False, ["owner_exempt"])  # l-2 has none: the chain's
    assert seat(engine, CHAIN, "boss") == (False, ["owner_exempt"])
    assert seat(engine, CHAIN, "lo")[0] is True  # type: ignore[index]  # owner at l-1 only is not the chain's


def test_a_designated_location_owner_without_the_template_exempts_nobody_there() -> None:
    engine = directory(owner="boss", location_owner="adm", chain_members=[BOSS],
                       members=[{"location": "l-1", "employee": "adm", "roles": ["administrator"]}])
    assert seat(engine, L1, "adm")[0] is True  # type: ignore[index]
    assert seat(engine, L1, "boss")[0] is True  # type: ignore[index]  # the chain's owner is not l-1's


def test_an_owner_at_some_locations_only_does_not_hold_owner_in_the_chain() -> None:
    engine = directory(owner="a", members=[{"location": "l-1", "employee": "a", "roles": ["owner"]},
                                           {"location": "l-2", "employee": "a", "roles": ["owner"]}])
    assert seat(engine, CHAIN, "a")[0] is True  # type: ignore[index]
    assert seat(engine, L1, "a") == (False, ["owner_exempt"])  # l-1 has no owner of its own: the chain's


def test_the_exempt_owner_has_only_the_owner_exempt_reason() -> None:
    assert seat(directory(chain_members=[BOSS]), CHAIN, "boss") == (False, ["owner_exempt"])


def test_a_location_scope_uses_the_locations_designated_owner() -> None:
    engine = directory(owner="boss", location_owner="mgr", chain_members=[BOSS],
                       members=[{"location": "l-1", "employee": "mgr", "roles": ["owner"]}])
    assert seat(engine, L1, "mgr") == (False, ["owner_exempt"])
    assert seat(engine, L1, "boss")[0] is True  # type: ignore[index]
    assert seat(engine, CHAIN, "boss") == (False, ["owner_exempt"])
    assert seat(engine, CHAIN, "mgr")[0] is True  # type: ignore[index]


def test_an_owner_at_one_location_only_is_the_only_owner_there() -> None:
    engine = directory(owner=None, members=[{"location": "l-1", "employee": "a", "roles": ["owner"]},
                                            {"location": "l-2", "employee": "b", "roles": ["owner"]}])
    assert seat(engine, L1, "a") == (False, ["owner_exempt"])
    assert seat(engine, L2, "b") == (False, ["owner_exempt"])
    assert [seat(engine, CHAIN, e)[0] for e in ("a", "b")] == [True, True]  # type: ignore[index]


# -- rights, not role names ------------------------------------------------------------------
ADMIN_DENIED_AT_L1 = directory(members=[
    {"location": "l-1", "employee": "a", "roles": ["administrator"],
     "deny": ["appointment:create", "payment:process", "deposit:topup"]},
    {"location": "l-2", "employee": "a", "roles": ["administrator"]},
])


@pytest.mark.parametrize(("case", "engine", "scope", "employee", "expected"), [
    ("a person at three locations is one seat in the chain",
     directory(members=[{"location": loc, "employee": "sp", "roles": ["service_provider"]}
                        for loc in ("l-1", "l-2", "l-3")]), CHAIN, "sp", (True, ["right:appointment:create"])),
    ("the same person is counted at each of their locations",
     directory(members=[{"location": loc, "employee": "sp", "roles": ["service_provider"]}
                        for loc in ("l-1", "l-2", "l-3")]), L3, "sp", (True, ["right:appointment:create"])),
    ("a chain-wide call-center operator is paid at every location",
     directory(chain_members=[{"employee": "cc", "roles": ["call_center"]}]), L3, "cc",
     (True, ["right:appointment:create"])),
    ("a payment override on an accountant makes them paid where it applies",
     directory(members=[{"location": "l-2", "employee": "acct", "roles": ["accountant"],
                         "allow": ["payment:process"]}]), L2, "acct", (True, ["right:payment:process"])),
    ("inactive is free whatever they hold",
     directory(members=[{"location": "l-1", "employee": "a", "roles": ["administrator"],
                         "provides_services": True}], inactive=("a",)), CHAIN, "a", (False, ["inactive"])),
    ("a custom role inheriting a template's billable right",
     directory(members=[{"location": "l-1", "employee": "x", "roles": ["junior"]}],
               roles=[{"chain": "ch-1", "role": "junior", "rights": ["calendar:view"],
                       "inherits": ["service_provider"]}]), CHAIN, "x", (True, ["right:appointment:create"])),
    ("a location's custom role holding a payment right",
     directory(members=[{"location": "l-2", "employee": "x", "roles": ["cashier"]}],
               roles=[{"location": "l-2", "role": "cashier", "rights": ["deposit:topup", "client:view"]}]),
     CHAIN, "x", (True, ["right:deposit:topup"])),
    ("a custom role of only non-billable rights is free",
     directory(members=[{"location": "l-2", "employee": "x", "roles": ["reader"]}],
               roles=[{"chain": "ch-1", "role": "reader", "rights": ["client:view", "report:view"]}]),
     CHAIN, "x", (False, ["no_billable_rights"])),
    ("a deny removing the only billable right makes the seat free",
     directory(members=[{"location": "l-1", "employee": "sp", "roles": ["service_provider"],
                         "deny": ["appointment:create"]}]), CHAIN, "sp", (False, ["no_billable_rights"])),
    ("a deny beats an allow of the same right",
     directory(members=[{"location": "l-1", "employee": "acct", "roles": ["accountant"],
                         "allow": ["payment:process"], "deny": ["payment:process"]}]),
     CHAIN, "acct", (False, ["no_billable_rights"])),
    ("a chain-wide deny removes a billable right at every location",
     directory(chain_members=[{"employee": "cc", "roles": ["call_center"], "deny": ["appointment:create"]}]),
     CHAIN, "cc", (False, ["no_billable_rights"])),
    ("a deny at one location: free there",
     ADMIN_DENIED_AT_L1, L1, "a", (False, ["no_billable_rights"])),
    ("a deny at one location: paid at the other",
     ADMIN_DENIED_AT_L1, L2, "a", (True, ["right:appointment:create", "right:deposit:topup",
                                           "right:payment:process"])),
    ("a deny at one location: paid in the chain for the rights held elsewhere",
     ADMIN_DENIED_AT_L1, CHAIN, "a", (True, ["right:appointment:create", "right:deposit:topup",
                                              "right:payment:process"])),
    ("providing services is listed before the rights",
     directory(members=[{"location": "l-1", "employee": "sp", "roles": ["service_provider"],
                         "provides_services": True}]), CHAIN, "sp",
     (True, ["provides_services", "right:appointment:create"])),
    ("providing services at another location does not count here",
     directory(members=[{"location": "l-1", "employee": "st", "roles": [], "provides_services": True},
                        {"location": "l-2", "employee": "st", "roles": []}]), L2, "st",
     (False, ["no_billable_rights"])),
    ("no membership at the location: not listed there",
     directory(members=[{"location": "l-1", "employee": "st", "roles": [], "provides_services": True}]), L2, "st",
     None),
])
def test_seat_follows_effective_rights(case: str, engine: TenantEngine, scope: Scope, employee: str,
                                       expected: tuple[bool, list[str]] | None) -> None:
    assert seat(engine, scope, employee) == expected, case


@pytest.mark.parametrize(("roles", "announced", "writes"), [
    (["marketer"], False, True),   # marketing:send writes
    (["viewer"], False, False),    # reads only
    (["accountant"], False, True),  # finance:manage writes
    (["service_provider"], True, True),
])
def test_the_writes_rule_bills_every_right_that_writes(roles: list[str], announced: bool, writes: bool) -> None:
    engine = directory(members=[{"location": "l-1", "employee": "x", "roles": roles}])
    assert (seat(engine, CHAIN, "x", "announced")[0], seat(engine, CHAIN, "x", "writes")[0]) == (  # type: ignore[index]
        announced, writes)


def test_an_unknown_rule_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        count_seats(WORKED, CHAIN, "everything")


def test_a_standalone_location_is_its_own_scope() -> None:
    spec = {"locations": [{"id": "solo", "owner": "o"}], "employees": [{"id": "o"}, {"id": "s"}],
            "memberships": [{"location": "solo", "employee": "o", "roles": ["owner"]},
                            {"location": "solo", "employee": "s", "roles": ["administrator"]}]}
    engine = TenantEngine(BUNDLE, build_directories(spec, BUNDLE)["l:solo"])
    counts = SeatCounter(engine, "announced").count_all()
    assert [c.scope for c in counts] == [Scope("location", "solo")]
    assert [(s.employee, s.paid) for s in counts[0].seats] == [("o", False), ("s", True)]


def test_scopes_of_a_chain_are_the_chain_then_each_location() -> None:
    assert [c.scope for c in SeatCounter(WORKED, "announced").count_all()] == [CHAIN, L1, L2, L3]


@pytest.mark.parametrize("scope", [Scope("chain", "other"), Scope("location", "nowhere")])
def test_a_scope_outside_the_tenant_is_not_found(scope: Scope) -> None:
    with pytest.raises(NotFound):
        count_seats(WORKED, scope, "announced")


def test_the_answer_carries_the_revision_and_shape() -> None:
    body = count_seats(WORKED, L3, "announced").to_json("2026-01-01T00:00:00.000Z")
    assert body == {"scope": {"location": "l-3"}, "rule": "announced", "paid_seats": 1, "free_seats": 1,
                    "employees": [{"employee": "boss", "paid": False, "reasons": ["owner_exempt"]},
                                  {"employee": "cc", "paid": True, "reasons": ["right:appointment:create"]}],
                    "revision": "0-0", "computed_at": "2026-01-01T00:00:00.000Z"}


def test_the_table_names_every_employee_and_the_totals() -> None:
    text = render_table(count_seats(WORKED, CHAIN, "announced"), explain=True)
    assert "owner_exempt" in text and "chain ch-1: 4 paid, 2 free" in text
    assert "owner_exempt" not in render_table(count_seats(WORKED, CHAIN, "announced"))


# -- previews --------------------------------------------------------------------------------
def nobody(_: str) -> Employee | None:
    return None


def test_preview_changes_nothing_and_reports_who_changes() -> None:
    before_directory = WORKED.directory.copy()
    before, after, changed = preview(WORKED, CHAIN, "announced", parse_changes([
        {"employee": "mkt", "location": "l-1", "membership": {"roles": ["marketer"], "allow": ["payment:refund"]}},
        {"employee": "cc", "chain": "ch-1", "membership": None},
    ]), nobody)
    assert (before.paid_seats, after.paid_seats) == (4, 4)
    assert [(c.employee, c.paid_before, c.paid_after) for c in changed] == [("cc", True, False), ("mkt", False, True)]
    assert WORKED.directory == before_directory


def test_preview_of_a_second_owner_removes_the_exemption() -> None:
    engine = directory(owner=None, chain_members=[BOSS])
    _, after, changed = preview(engine, CHAIN, "announced",
                                parse_changes([{"employee": "boss2", "chain": "ch-1",
                                                "membership": {"roles": ["owner"]}}]),
                                lambda e: Employee(e))
    assert [(c.employee, c.paid_before, c.paid_after) for c in changed] == [("boss", False, True),
                                                                            ("boss2", False, True)]
    assert after.paid_seats == 2


@pytest.mark.parametrize(("changes", "error"), [
    ([], BadRequest),
    ("x", BadRequest),
    ([{"employee": "mkt", "location": "l-1", "membership": {"roles": ["marketer"], "allow": ["nope:x"]}}],
     UnknownRight),
    ([{"employee": "mkt", "location": "l-1", "membership": {"roles": ["wizard"]}}], UnknownRole),
    ([{"employee": "bad id", "location": "l-1", "membership": None}], InvalidId),
    ([{"employee": "mkt", "location": "l-1", "chain": "ch-1", "membership": None}], BadRequest),
    ([{"employee": "mkt", "location": "elsewhere", "membership": None}], BadRequest),
    ([{"employee": "mkt", "chain": "other", "membership": {"roles": []}}], BadRequest),
    ([{"employee": "mkt", "location": "l-1", "membership": {"roles": [], "provides_services": "yes"}}], BadRequest),
    ([{"employee": "mkt", "location": "l-1", "membership": {"roles": []}, "extra": 1}], BadRequest),
    ([{"employee": "mkt", "chain": "ch-1", "membership": {"roles": [], "provides_services": True}}], BadRequest),
    ([{"employee": "mkt", "location": "l-3", "membership": None}], NotFound),
])
def test_preview_validates_changes_like_the_directory(changes: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        preview(WORKED, CHAIN, "announced", parse_changes(changes), nobody)


def test_preview_of_a_hire_who_does_not_exist_yet() -> None:
    before, after, changed = preview(WORKED, CHAIN, "announced", parse_changes([
        {"employee": "new-hire", "location": "l-2", "membership": {"roles": ["service_provider"]}}]), nobody)
    assert after.paid_seats == before.paid_seats + 1
    assert [(c.employee, c.paid_before, c.paid_after) for c in changed] == [("new-hire", False, True)]
    assert "new-hire" not in WORKED.directory.employees
