"""D20: with SIDECAR_MFA_SECRET unset, a Redis read alone never recovers a pending two-step code.

The report recovered a pending code in 0.81 s because the HMAC key sat in Redis beside the
hashes. Here the code is known (it arrives by mail), so instead of brute-forcing 10^6 codes the
test asks the equivalent question: does any value stored in Redis key the stored hash?
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.mfa import codes
from sidecar.mfa.key import load_or_create
from tests.conftest import make_settings
from tests.mfa_support import Inbox, scan_redis, smtp_inbox


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as box:
        yield box


@pytest.fixture
def settings(tmp_path: Path, inbox: Inbox):
    return make_settings(tmp_path, smtp_url=inbox.url)  # no mfa_secret: the default an operator gets


def test_no_value_in_redis_keys_a_pending_code(api, inbox: Inbox, redis_client, tmp_path: Path) -> None:
    assert api.put("/v1/employees/e-1", {"active": True, "email": "ana@example.com"}).status_code == 200
    response = api.post("/v1/mfa/challenges", {"employee": "e-1", "channel": "email", "device": {"id": "d-1"}},
                        scope="mfa")
    assert response.status_code == 201, response.get_json()
    challenge_id, code = response.get_json()["challenge_id"], inbox.last_code()
    everything = scan_redis(redis_client)
    wanted = {codes.code_hash(value.decode(errors="replace"), challenge_id, code).encode() for value in everything}
    assert not wanted & set(everything), "a value read from Redis keys the stored code hash"
    assert b"sidecar:mfa:key" not in everything
    key_file = tmp_path / "mfa.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert codes.code_hash(key_file.read_text().strip(), challenge_id, code).encode() in everything
    verified = api.post(f"/v1/mfa/challenges/{challenge_id}/verify", {"code": code}, scope="mfa")
    assert verified.status_code == 200, verified.get_json()


def test_a_key_an_older_release_left_in_redis_is_removed(api, inbox: Inbox, redis_client) -> None:
    client = redis_client
    client.set("sidecar:mfa:key", "0" * 64)
    assert api.put("/v1/employees/e-1", {"active": True, "email": "ana@example.com"}).status_code == 200
    response = api.post("/v1/mfa/challenges", {"employee": "e-1", "channel": "email", "device": {"id": "d-1"}},
                        scope="mfa")
    assert response.status_code == 201
    assert client.get("sidecar:mfa:key") is None


def test_concurrent_creators_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "mfa.key"
    first, created = load_or_create(path)
    again, created_again = load_or_create(path)
    assert created and not created_again and first == again and len(first) == 64
