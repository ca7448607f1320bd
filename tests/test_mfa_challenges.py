"""The challenge store on real Redis: keyed hashes, atomic verify across concurrent callers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import Conflict, Locked
from sidecar.mfa import codes
from sidecar.store.mfa.challenges import MAX_ATTEMPTS, ChallengeStore
from tests.mfa_support import Clock

SECRET = "store-test-secret"


@pytest.fixture
def store(redis_url: str) -> Iterator[ChallengeStore]:
    client = redis.Redis.from_url(redis_url)
    yield ChallengeStore(client, codes.KeyedCodes(lambda: SECRET), Clock())
    client.close()


def test_codes_are_six_digits() -> None:
    drawn = {codes.new_code() for _ in range(200)}
    assert all(len(c) == codes.DIGITS == 6 and c.isdigit() for c in drawn) and len(drawn) > 150


@given(st.text(alphabet="0123456789", min_size=6, max_size=6))
def test_a_code_matches_only_its_own_challenge_and_key(code: str) -> None:
    stored = codes.code_hash(SECRET, "ch-1", code)
    assert codes.matches(SECRET, "ch-1", code, stored)
    assert not codes.matches(SECRET, "ch-2", code, stored)
    assert not codes.matches("another-secret", "ch-1", code, stored)
    assert code not in stored


def _race(count: int, attempt) -> list[object]:
    results: list[object] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait()
        try:
            results.append(attempt())
        except (Conflict, Locked) as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_verifies_with_the_right_code_succeed_once(store: ChallengeStore) -> None:
    challenge = store.create("e-1", "email", {}, None, "424242")
    results = _race(8, lambda: store.verify(challenge.id, "424242"))
    assert sum(getattr(r, "kind", None) == "verified" for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if getattr(r, "kind", None) != "verified")


def test_concurrent_wrong_codes_are_all_counted(store: ChallengeStore) -> None:
    challenge = store.create("e-1", "email", {}, None, "424242")
    results = _race(MAX_ATTEMPTS - 1, lambda: store.verify(challenge.id, "000000"))
    assert sorted(r.kind for r in results) == ["failed"] * (MAX_ATTEMPTS - 1)  # type: ignore[attr-defined]
    assert store.get(challenge.id).attempts == MAX_ATTEMPTS - 1
    assert store.verify(challenge.id, "000000").kind == "locked"


def test_concurrent_wrong_codes_beyond_the_limit_lock_exactly_once(store: ChallengeStore) -> None:
    challenge = store.create("e-1", "email", {}, None, "424242")
    results = _race(2 * MAX_ATTEMPTS, lambda: store.verify(challenge.id, "000000"))
    kinds = sorted(getattr(r, "kind", "refused") for r in results)
    assert kinds == ["failed"] * (MAX_ATTEMPTS - 1) + ["locked"] + ["refused"] * MAX_ATTEMPTS
    assert all(isinstance(r, Locked) for r in results if not hasattr(r, "kind"))
