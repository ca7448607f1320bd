"""Logins: every template may sign in; `deny: [login:*]` blocks sign-in and nothing else; a new device
is recorded once (`login.new_device`)."""

from __future__ import annotations

import pytest

from sidecar.audit import logins
from sidecar.store.seen_devices import seen_key
from tests.audit_support import read_log, report, seed, shipped
from tests.conftest import Api, make_settings, make_tokens

IPAD = {"id": "d-1", "name": "Front desk iPad", "platform": "ios", "user_agent": "App/1.0 (iPad)"}
LAPTOP = {"id": "d-2", "name": "Laptop", "platform": "web", "user_agent": "Mozilla/5.0"}


def new_devices(api, url: str, log: str) -> list[dict]:
    shipped(api)
    return [e for e in read_log(url, log) if e["action"] == logins.ACTION]


@pytest.mark.parametrize("role", ["administrator", "call_center", "service_provider", "accountant", "marketer",
                                  "smm_manager", "viewer", "system_manager", "manager", "owner"])
def test_every_template_may_sign_in(api, role) -> None:
    seed(api)
    assert api.put("/v1/locations/l-1/employees/idle", {"roles": [role]}).status_code == 200
    for right in ("login:password", "login:mfa"):
        assert api.check("idle", "l-1", right)["allowed"], (role, right)


def test_a_deny_override_on_login_star_blocks_sign_in_only(api) -> None:
    seed(api)
    written = api.put("/v1/locations/l-1/employees/e-1", {"roles": ["administrator"], "deny": ["login:*"]})
    assert written.status_code == 200, written.get_json()
    for right in ("login:password", "login:mfa"):
        answer = api.check("e-1", "l-1", right)
        assert (answer["allowed"], answer["reason"]) == (False, "denied_by_override")
    assert api.check("e-1", "l-1", "appointment:create")["allowed"]
    explained = api.post("/v1/check?explain=1", {"employee": "e-1", "location": "l-1", "resource": "login",
                                                 "action": "password"}, scope="check").get_json()
    assert explained["explanation"]["overrides"]["deny"] == ["login:*"]
    rights = api.get("/v1/locations/l-1/employees/e-1/rights", scope="check").get_json()["rights"]
    assert "appointment:create" in rights and not any(r.startswith("login:") for r in rights)


def test_an_unknown_wildcard_is_refused(api) -> None:
    seed(api)
    answer = api.put("/v1/locations/l-1/employees/e-1", {"roles": [], "deny": ["nothing:*"]})
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "unknown_right"


def test_a_login_check_from_a_new_device_is_recorded_once_per_device(api, redis_url) -> None:
    seed(api)
    assert api.put("/v1/locations/l-9/employees/e-1", {"roles": ["viewer"]}).status_code == 200
    context = {"ip": "203.0.113.7", "device": IPAD}
    assert api.check("e-1", "l-1", "login:password", context=context)["allowed"]
    api.check("e-1", "l-1", "login:mfa", context=context)
    api.check("e-1", "l-1", "login:password", context={"ip": "198.51.100.1", "device": IPAD})
    (chain_event,) = new_devices(api, redis_url, "c:ch-1")
    (solo_event,) = new_devices(api, redis_url, "l:l-9")  # every chain and standalone location of the employee
    for event in (chain_event, solo_event):
        assert (event["category"], event["employee"], event["ip"]) == ("login", "e-1", "203.0.113.7")
        assert event["device"] == IPAD and event["details"]["user_agent"] == "App/1.0 (iPad)"
        assert event["object"] == {"type": "device", "id": "d-1"}
        assert event["details"]["source"] == "check" and event["details"]["location"] == "l-1"

    api.check("e-1", "l-1", "login:password", context={"ip": "203.0.113.8", "device": LAPTOP})
    assert [e["device"]["id"] for e in new_devices(api, redis_url, "c:ch-1")] == ["d-1", "d-2"]
    batch = api.post("/v1/check/batch", {"employee": "e-1", "location": "l-1", "context": {"device": IPAD},
                                         "checks": [{"resource": "login", "action": "password"}]}, scope="check")
    assert batch.status_code == 200
    assert len(new_devices(api, redis_url, "c:ch-1")) == 2


def test_only_an_allowed_login_check_with_a_device_counts(api, redis_url) -> None:
    seed(api)
    api.put("/v1/locations/l-1/employees/idle", {"roles": [], "deny": ["login:*"]})
    assert not api.check("idle", "l-1", "login:password", context={"device": IPAD})["allowed"]  # denied
    api.check("e-1", "l-1", "calendar:view", context={"device": IPAD})  # not a login
    api.check("e-1", "l-1", "login:password")  # no device
    api.check("e-1", "l-1", "login:password", context={"device": {"name": "no id"}})
    assert new_devices(api, redis_url, "c:ch-1") == []


def test_a_reported_login_from_a_new_device_is_recorded_once(api, redis_url) -> None:
    seed(api)
    assert report(api, action="login.failed", outcome="failure", device=LAPTOP).status_code == 202
    assert new_devices(api, redis_url, "c:ch-1") == []
    assert report(api, action="login.password", outcome="success", device=LAPTOP, ip="192.0.2.4").status_code == 202
    assert report(api, action="login.password", outcome="success", device=LAPTOP).status_code == 202
    (event,) = new_devices(api, redis_url, "c:ch-1")
    assert (event["device"]["id"], event["ip"], event["details"]["source"]) == ("d-2", "192.0.2.4", "report")
    # the same device seen by a check later is not new any more
    api.check("e-1", "l-1", "login:password", context={"device": LAPTOP})
    assert len(new_devices(api, redis_url, "c:ch-1")) == 1


def test_two_workers_record_a_new_device_once(api, tmp_path, app_factory, redis_url) -> None:
    """Another app on the same Redis (another worker) does not record the device again."""
    seed(api)
    (tmp_path / "other").mkdir()
    elsewhere = make_settings(tmp_path / "other")
    other = Api(app_factory(elsewhere), make_tokens(elsewhere))
    api.check("e-1", "l-1", "login:password", context={"device": IPAD})
    other.check("e-1", "l-1", "login:password", context={"device": IPAD})
    shipped(other)
    assert len(new_devices(api, redis_url, "c:ch-1")) == 1


def test_a_device_whose_event_was_not_recorded_is_tried_again(api, redis_url, redis_client) -> None:
    """Redis refuses the event (read-only, as after a failover): the check still answers, and the
    next login from the device records it."""
    seed(api)
    redis_client.config_set("min-replicas-to-write", 1)  # every write now fails: NOREPLICAS
    try:
        answer = api.post("/v1/check", {"employee": "e-1", "location": "l-1", "resource": "login",
                                         "action": "password", "context": {"device": IPAD}}, scope="check")
        assert answer.status_code == 200 and answer.get_json()["allowed"]
    finally:
        redis_client.config_set("min-replicas-to-write", 0)
    assert not redis_client.sismember(seen_key("e-1"), "d-1")
    api.check("e-1", "l-1", "login:password", context={"device": IPAD})
    assert [e["device"]["id"] for e in new_devices(api, redis_url, "c:ch-1")] == ["d-1"]
