"""The seat history store on real Redis: each change recorded once, periods read by time."""

from __future__ import annotations

import pytest
import redis

from sidecar.policy.seats import Scope, Seat, Seats
from sidecar.store.seat_history import SEAT_CHANGES_STREAM, SeatHistory, scope_stream

CHAIN = Scope("chain", "ch-1")


def seats(revision: str, *paid: str, scope: Scope = CHAIN) -> Seats:
    everyone = sorted({*paid, "free-1"})
    return Seats(scope, revision, "announced",
                 tuple(Seat(e, e in paid, ("x",)) for e in everyone))


@pytest.fixture
def history(redis_client: redis.Redis) -> SeatHistory:
    return SeatHistory(redis_client)


def test_each_change_is_recorded_once_whoever_records_it(history: SeatHistory, redis_client: redis.Redis) -> None:
    assert history.record([seats("1000-0", "a", "b")]) == 2
    assert history.record([seats("1000-0", "a", "b")]) == 0  # a second replica, same revision
    assert redis_client.xlen(SEAT_CHANGES_STREAM) == 2
    assert redis_client.xlen(scope_stream(CHAIN)) == 2


def test_an_older_revision_never_overwrites_a_newer_one(history: SeatHistory) -> None:
    history.record([seats("2000-0", "a")])
    assert history.record([seats("1000-0", "a", "b")]) == 0
    assert history.record([seats("2001-0", "a", "b")]) == 1  # diffed against 2000-0's seats, not 1000-0's


def test_a_revision_is_diffed_against_the_last_recorded_seats(history: SeatHistory) -> None:
    history.record([seats("1000-0", "a", "b")])
    assert history.record([seats("2000-0", "b", "c")]) == 2
    changes = history.history(CHAIN, 0, 10_000).changes
    assert [(c.time_ms, c.employee, c.paid, c.paid_seats) for c in changes] == [
        (1000, "a", True, 2), (1000, "b", True, 2), (2000, "c", True, 2), (2000, "a", False, 2)]


def test_entry_ids_are_the_writes_time_and_sequence(history: SeatHistory, redis_client: redis.Redis) -> None:
    history.record([seats("1000-3", "a", "b")])
    assert [i.decode() for i, _ in redis_client.xrange(scope_stream(CHAIN))] == ["1000-3000000", "1000-3000001"]


@pytest.mark.parametrize(("since", "until", "at_since", "times", "peak"), [
    (0, 10_000, 0, [1000, 1000, 2000, 3000], 2),
    (1500, 2500, 2, [2000], 2),      # in force at since: 2 seats (a, b), then b leaves
    (2500, 10_000, 1, [3000], 1),
    (1000, 1000, 0, [1000, 1000], 2),  # both ends inclusive
    (3001, 9000, 0, [], 0),
])
def test_a_period_has_its_changes_and_the_seats_in_force_when_it_began(
        history: SeatHistory, since: int, until: int, at_since: int, times: list[int], peak: int) -> None:
    history.record([seats("1000-0", "a", "b")])
    history.record([seats("2000-0", "a")])
    history.record([seats("3000-0")])
    found = history.history(CHAIN, since, until)
    assert (found.paid_seats_at_since, [c.time_ms for c in found.changes], found.peak_paid_seats) == (
        at_since, times, peak)


def test_scopes_are_recorded_apart(history: SeatHistory) -> None:
    other = Scope("location", "l-1")
    history.record([seats("1000-0", "a"), seats("1000-0", "a", "b", scope=other)])
    assert [c.employee for c in history.history(CHAIN, 0, 5000).changes] == ["a"]
    assert [c.employee for c in history.history(other, 0, 5000).changes] == ["a", "b"]


def test_a_change_on_the_global_stream_names_its_scope(history: SeatHistory, redis_client: redis.Redis) -> None:
    history.record([seats("1000-0", "a")])
    [(_, fields)] = redis_client.xrange(SEAT_CHANGES_STREAM)
    assert {k.decode(): v.decode() for k, v in fields.items()} == {
        "scope": "chain:ch-1", "employee": "a", "paid": "1", "paid_seats": "1", "revision": "1000-0",
        "cause": "write", "time": "1000"}


# -- causes (issue 14) -------------------------------------------------------------------------
def under(rule: str, revision: str, *paid: str) -> Seats:
    counted = seats(revision, *paid)
    return Seats(counted.scope, counted.revision, rule, counted.seats)


def causes(history: SeatHistory) -> list[tuple[str, bool, str]]:
    return [(c.employee, c.paid, c.cause) for c in history.history(CHAIN, 0, 2**45).changes]


def test_a_newer_policy_at_the_same_revision_is_a_policy_reload(history: SeatHistory) -> None:
    history.record([seats("1000-0", "a", "b")], policy_version=5)
    assert history.record([seats("1000-0", "a")], policy_version=5) == 0  # same revision, same policy
    assert history.record([seats("1000-0", "a")], policy_version=6) == 1
    assert causes(history)[-1] == ("b", False, "policy_reload")


def test_an_older_policy_is_a_replica_not_yet_reloaded_and_is_ignored(history: SeatHistory) -> None:
    history.record([seats("1000-0", "a")], policy_version=6)
    assert history.record([seats("2000-0", "a", "b")], policy_version=5) == 0
    assert history.record([seats("2000-0", "a", "b")], policy_version=6) == 1
    assert causes(history)[-1] == ("b", True, "write")


def test_another_rule_is_a_rule_change_and_a_rule_not_claimed_is_ignored(history: SeatHistory) -> None:
    history.record([under("announced", "1000-0", "a")])
    assert history.claim_rule("writes") is None
    assert history.record([under("announced", "1000-0", "a", "b")], policy_version=1) == 0  # not the claimed rule
    assert history.record([under("writes", "1000-0", "a", "b")]) == 1
    assert causes(history)[-1] == ("b", True, "rule_change")
    assert history.claim_rule("announced") == "writes"


def test_a_revision_written_by_a_bulk_import_is_an_import(history: SeatHistory, redis_client: redis.Redis) -> None:
    revision = redis_client.xadd("sidecar:changes", {"kind": "import", "tenants": "c:ch-1"}).decode()
    history.record([seats(revision, "a")])
    later = redis_client.xadd("sidecar:changes", {"kind": "membership", "tenants": "c:ch-1"}).decode()
    history.record([seats(later, "a", "b")])
    assert causes(history) == [("a", True, "import"), ("b", True, "write")]


def test_entries_stay_in_order_when_a_reload_is_recorded_between_writes(history: SeatHistory,
                                                                        redis_client: redis.Redis) -> None:
    history.record([seats("1000-0", "a")], policy_version=1)
    history.record([seats("1000-0")], policy_version=2)  # stamped now (Redis time), after 1000
    history.record([seats("1001-0", "a")], policy_version=2)  # the write's time is older than the reload's entry
    ids = [i.decode() for i, _ in redis_client.xrange(scope_stream(CHAIN))]
    assert len(ids) == 3 and ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    assert causes(history) == [("a", True, "write"), ("a", False, "policy_reload"), ("a", True, "write")]


def test_entries_recorded_before_causes_existed_read_as_writes(history: SeatHistory,
                                                              redis_client: redis.Redis) -> None:
    redis_client.xadd(scope_stream(CHAIN), {"c": "a 1 1 1000-0"}, id="1000-0")
    assert causes(history) == [("a", True, "write")]
