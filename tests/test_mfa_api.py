"""Two-step authentication through the API: a real SMTP server, real Redis, time moved not slept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sidecar.store.mfa.push import OUTBOX_STREAM
from tests.conftest import Api, free_port, make_settings, make_tokens
from tests.mfa_support import Clock, Inbox, scan_redis, smtp_inbox

SECRET = "test-mfa-secret-0123456789abcdef"
PHONE = {"id": "phone-1", "name": "Ana's iPhone", "platform": "ios", "push_token": "apns-token-1"}
ASKING = {"id": "laptop-7", "name": "Office laptop", "platform": "web", "user_agent": "Firefox/128"}
IP = "203.0.113.7"


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as box:
        yield box


@pytest.fixture
def settings(tmp_path: Path, inbox: Inbox):
    return make_settings(tmp_path, smtp_url=inbox.url, mfa_secret=SECRET)


@pytest.fixture
def clock(app) -> Clock:
    moving = Clock()
    app.extensions["sidecar"].two_step.now = moving
    return moving


@pytest.fixture
def people(api: Api, clock: Clock) -> Api:
    """e-1 works at l-1 (chain ch-1) and at standalone l-9; e-2 elsewhere; e-off inactive; e-mute no email."""
    for path, body in [
        ("/v1/employees/e-1", {"active": True, "email": "ana@example.com", "name": "Ana"}),
        ("/v1/employees/e-2", {"active": True, "email": "bo@example.com"}),
        ("/v1/employees/e-off", {"active": False, "email": "off@example.com"}),
        ("/v1/employees/e-mute", {"active": True}),
        ("/v1/employees/boss", {"active": True, "email": "boss@example.com"}),
        ("/v1/chains/ch-1", {}),
        ("/v1/locations/l-1", {"chain": "ch-1"}),
        ("/v1/locations/l-9", {"chain": None}),
        ("/v1/locations/l-1/employees/e-1", {"roles": ["viewer"]}),
        ("/v1/locations/l-9/employees/e-1", {"roles": ["viewer"]}),
        ("/v1/chains/ch-1/employees/boss", {"roles": ["owner"]}),
        ("/v1/locations/l-9/employees/boss", {"roles": ["owner"]}),
    ]:
        response = api.put(path, body)
        assert response.status_code < 300, (path, response.get_json())
    return api


def challenge(api: Api, employee: str = "e-1", channel: str = "email", **extra) -> dict:
    response = api.post("/v1/mfa/challenges", {"employee": employee, "channel": channel, "device": ASKING,
                                               "ip": IP, **extra}, scope="mfa")
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def verify(api: Api, challenge_id: str, code: str):
    return api.post(f"/v1/mfa/challenges/{challenge_id}/verify", {"code": code}, scope="mfa")


def status(api: Api, challenge_id: str) -> str:
    return api.get(f"/v1/mfa/challenges/{challenge_id}", scope="mfa").get_json()["status"]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def register(api: Api, employee: str = "e-1", device: dict | None = None):
    return api.post(f"/v1/employees/{employee}/devices", device or PHONE, scope="mfa")


# -- email -----------------------------------------------------------------------------------
def test_email_code_sent_through_smtp_verifies(people: Api, inbox: Inbox) -> None:
    created = challenge(people)
    assert created["channel"] == "email" and created["expires_at"].endswith("Z")
    response = verify(people, created["challenge_id"], inbox.last_code())
    assert (response.status_code, response.get_json()) == (200, {"status": "verified"})
    assert status(people, created["challenge_id"]) == "verified"


def test_email_names_product_device_and_ip_in_plain_text(people: Api, inbox: Inbox) -> None:
    challenge(people)
    message = inbox.messages[-1]
    body = message.get_body(("plain",)).get_content()
    assert message["To"] == "ana@example.com" and "Sidecar" in message["Subject"]
    assert message.get_content_type() == "text/plain"
    assert "Office laptop (web)" in body and IP in body and "Sidecar" in body and "5 minutes" in body


def test_code_is_accepted_only_once(people: Api, inbox: Inbox) -> None:
    created = challenge(people)
    code = inbox.last_code()
    assert verify(people, created["challenge_id"], code).status_code == 200
    again = verify(people, created["challenge_id"], code)
    assert again.status_code == 409 and again.get_json()["error"]["reason"] == "already_used"


def test_wrong_code_answers_invalid_code_with_attempts_left(people: Api, inbox: Inbox) -> None:
    created = challenge(people)
    bad = wrong(inbox.last_code())
    answers = [verify(people, created["challenge_id"], bad) for _ in range(4)]
    assert [(a.status_code, a.get_json()["error"]["code"], a.get_json()["error"]["attempts_left"])
            for a in answers] == [(400, "invalid_code", left) for left in (4, 3, 2, 1)]


def test_fifth_wrong_code_locks_the_challenge(people: Api, inbox: Inbox) -> None:
    created = challenge(people)
    code = inbox.last_code()
    for _ in range(4):
        verify(people, created["challenge_id"], wrong(code))
    fifth = verify(people, created["challenge_id"], wrong(code))
    assert (fifth.status_code, fifth.get_json()["error"]["code"]) == (423, "locked")
    right = verify(people, created["challenge_id"], code)
    assert (right.status_code, right.get_json()["error"]["code"]) == (423, "locked")
    assert status(people, created["challenge_id"]) == "locked"


@pytest.mark.parametrize(("elapsed", "expected"), [(0, 200), (299, 200), (300, 410), (3000, 410)])
def test_code_expires_after_five_minutes(people: Api, inbox: Inbox, clock: Clock, elapsed: int,
                                         expected: int) -> None:
    created = challenge(people)
    clock.move(elapsed)
    response = verify(people, created["challenge_id"], inbox.last_code())
    assert response.status_code == expected
    if expected == 410:
        assert response.get_json()["error"]["code"] == "expired"
        assert status(people, created["challenge_id"]) == "expired"


def test_unknown_challenge_answers_404(people: Api) -> None:
    response = verify(people, "ch-doesnotexist", "123456")
    assert (response.status_code, response.get_json()["error"]["code"]) == (404, "not_found")
    assert people.get("/v1/mfa/challenges/ch-doesnotexist", scope="mfa").status_code == 404


@pytest.mark.parametrize(("employee", "status_code", "reason"), [
    ("nobody", 404, None),
    ("e-off", 409, "employee_inactive"),
    ("e-mute", 409, "no_email"),
])
def test_unusable_employee_is_refused(people: Api, employee: str, status_code: int, reason: str | None) -> None:
    response = people.post("/v1/mfa/challenges", {"employee": employee, "channel": "email"}, scope="mfa")
    assert response.status_code == status_code
    assert response.get_json()["error"].get("reason") == reason


def test_email_channel_without_smtp_url_answers_503(tmp_path: Path, app_factory) -> None:
    settings = make_settings(tmp_path, mfa_secret=SECRET)
    api = Api(app_factory(settings), make_tokens(settings))
    api.put("/v1/employees/e-1", {"active": True, "email": "ana@example.com"})
    response = api.post("/v1/mfa/challenges", {"employee": "e-1", "channel": "email"}, scope="mfa")
    error = response.get_json()["error"]
    assert (response.status_code, error["code"], error["reason"]) == (503, "channel_unavailable", "disabled")
    assert "SIDECAR_SMTP_URL" in error["message"]


def test_unreachable_smtp_server_answers_503_and_leaves_no_challenge(tmp_path: Path, app_factory,
                                                                       redis_client: redis.Redis) -> None:
    settings = make_settings(tmp_path, smtp_url=f"smtp://127.0.0.1:{free_port()}", mfa_secret=SECRET)
    api = Api(app_factory(settings), make_tokens(settings))
    api.put("/v1/employees/e-1", {"active": True, "email": "ana@example.com"})
    response = api.post("/v1/mfa/challenges", {"employee": "e-1", "channel": "email"}, scope="mfa")
    assert (response.status_code, response.get_json()["error"]["code"]) == (503, "channel_unavailable")
    assert list(redis_client.scan_iter("sidecar:mfa:challenge:*")) == []


# -- rate limit ------------------------------------------------------------------------------
def test_sixth_challenge_in_ten_minutes_is_rate_limited_with_retry_after(people: Api, clock: Clock) -> None:
    for _ in range(5):
        challenge(people)
        clock.move(60)
    response = people.post("/v1/mfa/challenges", {"employee": "e-1", "channel": "email"}, scope="mfa")
    assert (response.status_code, response.get_json()["error"]["code"]) == (429, "rate_limited")
    assert response.headers["Retry-After"] == "300"
    assert response.get_json()["error"]["retry_after"] == 300


def test_rate_limit_frees_a_slot_when_the_oldest_challenge_leaves_the_window(people: Api, clock: Clock) -> None:
    for _ in range(5):
        challenge(people)
        clock.move(60)
    clock.move(300)
    challenge(people)


def test_rate_limit_counts_each_employee_apart(people: Api) -> None:
    for _ in range(5):
        challenge(people, "e-1")
    challenge(people, "e-2")


# -- secrets ---------------------------------------------------------------------------------
def test_code_is_never_stored_in_clear_in_redis(people: Api, inbox: Inbox, redis_client: redis.Redis) -> None:
    register(people)
    challenge(people, channel="push")
    created = challenge(people)
    code = inbox.last_code()
    verify(people, created["challenge_id"], wrong(code))
    everything = scan_redis(redis_client)
    assert any(b"sidecar:mfa:challenge:" in item for item in everything)
    assert not [item for item in everything if code.encode() in item]


# -- replicas --------------------------------------------------------------------------------
@pytest.mark.parametrize("secret", [SECRET, None], ids=["configured-secret", "secret-kept-in-redis"])
def test_two_app_instances_share_challenges(tmp_path: Path, app_factory, inbox: Inbox, secret: str | None) -> None:
    settings = make_settings(tmp_path, smtp_url=inbox.url, mfa_secret=secret)
    tokens = make_tokens(settings)
    api_a, api_b = Api(app_factory(settings), tokens), Api(app_factory(settings), tokens)
    api_a.put("/v1/employees/e-1", {"active": True, "email": "ana@example.com"})
    created = challenge(api_a)
    assert status(api_b, created["challenge_id"]) == "pending"
    assert verify(api_b, created["challenge_id"], inbox.last_code()).status_code == 200
    assert status(api_a, created["challenge_id"]) == "verified"


# -- push ------------------------------------------------------------------------------------
def test_device_registration_answers_201_then_200_when_replaced(people: Api) -> None:
    first, again = register(people), register(people, device={**PHONE, "push_token": "apns-token-2"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert "push_token" not in first.get_json()
    listed = people.get("/v1/employees/e-1/devices", scope="mfa").get_json()["devices"]
    assert [d["id"] for d in listed] == ["phone-1"]


def test_device_of_unknown_employee_is_refused(people: Api) -> None:
    assert register(people, "nobody").status_code == 404


def test_push_challenge_round_trip_through_the_outbox(people: Api, redis_client: redis.Redis) -> None:
    register(people)
    register(people, device={**PHONE, "id": "tablet-2", "platform": "android", "push_token": "fcm-token-2"})
    created = challenge(people, channel="push")
    [(_, entries)] = redis_client.xread({OUTBOX_STREAM: "0-0"})
    [(_, fields)] = entries
    message = {k.decode(): v.decode() for k, v in fields.items()}
    assert message["challenge_id"] == created["challenge_id"] and message["employee"] == "e-1"
    assert sorted(json.loads(message["push_tokens"])) == ["apns-token-1", "fcm-token-2"]
    assert json.loads(message["device"])["name"] == "Office laptop" and message["ip"] == IP
    assert message["expires_at"] == created["expires_at"]
    answer = people.post(f"/v1/mfa/challenges/{message['challenge_id']}/approve",
                         {"device_id": "phone-1", "decision": "approve"}, scope="mfa")
    assert (answer.status_code, answer.get_json()) == (200, {"status": "verified"})
    assert status(people, created["challenge_id"]) == "verified"


def test_push_denied_by_the_phone_reads_denied(people: Api) -> None:
    register(people)
    created = challenge(people, channel="push")
    answer = people.post(f"/v1/mfa/challenges/{created['challenge_id']}/approve",
                         {"device_id": "phone-1", "decision": "deny"}, scope="mfa")
    assert (answer.status_code, answer.get_json()) == (200, {"status": "denied"})
    assert status(people, created["challenge_id"]) == "denied"


@pytest.mark.parametrize("device_id", ["phone-unknown", "phone-of-e-2"])
def test_push_answer_from_a_device_not_registered_to_the_employee_is_refused(people: Api, device_id: str) -> None:
    register(people)
    register(people, "e-2", {**PHONE, "id": "phone-of-e-2"})
    created = challenge(people, channel="push")
    answer = people.post(f"/v1/mfa/challenges/{created['challenge_id']}/approve",
                         {"device_id": device_id, "decision": "approve"}, scope="mfa")
    assert (answer.status_code, answer.get_json()["error"]["reason"]) == (403, "unregistered_device")
    assert status(people, created["challenge_id"]) == "pending"


def test_push_answer_after_expiry_answers_410(people: Api, clock: Clock) -> None:
    register(people)
    created = challenge(people, channel="push")
    clock.move(301)
    answer = people.post(f"/v1/mfa/challenges/{created['challenge_id']}/approve",
                         {"device_id": "phone-1", "decision": "approve"}, scope="mfa")
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (410, "expired")
    assert status(people, created["challenge_id"]) == "expired"


def test_push_is_answered_only_once(people: Api) -> None:
    register(people)
    created = challenge(people, channel="push")
    path = f"/v1/mfa/challenges/{created['challenge_id']}/approve"
    assert people.post(path, {"device_id": "phone-1", "decision": "deny"}, scope="mfa").status_code == 200
    again = people.post(path, {"device_id": "phone-1", "decision": "approve"}, scope="mfa")
    assert again.status_code == 409 and status(people, created["challenge_id"]) == "denied"


def test_push_challenge_without_registered_device_is_refused(people: Api) -> None:
    response = people.post("/v1/mfa/challenges", {"employee": "e-1", "channel": "push"}, scope="mfa")
    assert (response.status_code, response.get_json()["error"]["reason"]) == (409, "no_registered_device")


@pytest.mark.parametrize("channel", ["email", "push"])
def test_answer_on_the_other_channel_is_refused(people: Api, inbox: Inbox, channel: str) -> None:
    register(people)
    created = challenge(people, channel=channel)
    if channel == "push":
        response = verify(people, created["challenge_id"], "123456")
    else:
        response = people.post(f"/v1/mfa/challenges/{created['challenge_id']}/approve",
                               {"device_id": "phone-1", "decision": "approve"}, scope="mfa")
    assert (response.status_code, response.get_json()["error"]["reason"]) == (409, "wrong_channel")


# -- the trail -------------------------------------------------------------------------------
def _events(api: Api, where: str) -> list[dict]:
    response = api.get(f"/v1/{where}/security-events?viewer=boss&category=login&employee=e-1&limit=500",
                       scope="security")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["events"]


def test_every_step_is_a_login_event_in_each_chain_and_standalone_location(people: Api, inbox: Inbox) -> None:
    register(people)
    email_challenge = challenge(people)
    code = inbox.last_code()
    verify(people, email_challenge["challenge_id"], wrong(code))
    verify(people, email_challenge["challenge_id"], code)
    locked = challenge(people)
    for _ in range(5):
        verify(people, locked["challenge_id"], "000000" if inbox.last_code() != "000000" else "111111")
    for decision in ("approve", "deny"):
        pushed = challenge(people, channel="push")
        people.post(f"/v1/mfa/challenges/{pushed['challenge_id']}/approve",
                    {"device_id": "phone-1", "decision": decision}, scope="mfa")
    expected = {"mfa_device_registered", "mfa_challenge_sent", "mfa_failed", "mfa_verified", "mfa_locked",
                "mfa_approved", "mfa_denied"}
    for where in ("chains/ch-1", "locations/l-9"):
        events = _events(people, where)
        counts = {action: sum(e["action"] == action for e in events) for action in expected}
        assert counts == {"mfa_device_registered": 1, "mfa_challenge_sent": 4, "mfa_failed": 5, "mfa_verified": 1,
                          "mfa_locked": 1, "mfa_approved": 1, "mfa_denied": 1}, where
        assert {e["action"] for e in events} == expected, where
        sent = [e for e in events if e["action"] == "mfa_challenge_sent"]
        assert len(sent) == 4 and all(e["ip"] == IP and e["device"]["name"] == "Office laptop" for e in sent)
        assert all(e["category"] == "login" for e in events)
        assert not any(code in json.dumps(e) for e in events)


# -- the edges: scopes and bad input ---------------------------------------------------------
ROUTES = [
    ("POST", "/v1/mfa/challenges", {"employee": "e-1", "channel": "email"}),
    ("GET", "/v1/mfa/challenges/ch-x", None),
    ("POST", "/v1/mfa/challenges/ch-x/verify", {"code": "123456"}),
    ("POST", "/v1/mfa/challenges/ch-x/approve", {"device_id": "phone-1", "decision": "approve"}),
    ("POST", "/v1/employees/e-1/devices", PHONE),
    ("GET", "/v1/employees/e-1/devices", None),
    ("DELETE", "/v1/employees/e-1/devices/phone-1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("scope", ["check", "admin", "billing", "audit", "security"])
def test_tokens_without_the_mfa_scope_are_refused(people: Api, method: str, path: str, body: dict | None,
                                                  scope: str) -> None:
    response = people.call(method, path, json=body, scope=scope)
    assert (response.status_code, response.get_json()["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_requests_without_a_token_are_refused(people: Api, method: str, path: str, body: dict | None) -> None:
    assert people.call(method, path, json=body).status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_the_mfa_scope_is_enough(people: Api, method: str, path: str, body: dict | None) -> None:
    assert people.call(method, path, json=body, scope="mfa").status_code not in (401, 403)


@pytest.mark.parametrize(("path", "body", "code"), [
    ("/v1/mfa/challenges", None, "invalid_json"),
    ("/v1/mfa/challenges", [1], "invalid_json"),
    ("/v1/mfa/challenges", {"channel": "email"}, "invalid_id"),
    ("/v1/mfa/challenges", {"employee": "e 1", "channel": "email"}, "invalid_id"),
    ("/v1/mfa/challenges", {"employee": "e-1"}, "invalid_request"),
    ("/v1/mfa/challenges", {"employee": "e-1", "channel": "sms"}, "invalid_request"),
    ("/v1/mfa/challenges", {"employee": "e-1", "channel": "email", "ip": "not-an-ip"}, "invalid_request"),
    ("/v1/mfa/challenges", {"employee": "e-1", "channel": "email", "device": 7}, "invalid_request"),
    ("/v1/mfa/challenges", {"employee": "e-1", "channel": "email", "device": "a\nb"}, "invalid_request"),
    ("/v1/mfa/challenges", {"employee": "e-1", "channel": "email", "device": {"name": 1}}, "invalid_request"),
    ("/v1/mfa/challenges/ch-x/verify", {}, "invalid_request"),
    ("/v1/mfa/challenges/ch-x/verify", {"code": 123456}, "invalid_request"),
    ("/v1/mfa/challenges/ch-x/verify", {"code": "1" * 33}, "invalid_request"),
    ("/v1/mfa/challenges/bad%20id/verify", {"code": "123456"}, "invalid_id"),
    ("/v1/mfa/challenges/ch-x/approve", {"device_id": "phone-1", "decision": "maybe"}, "invalid_request"),
    ("/v1/mfa/challenges/ch-x/approve", {"decision": "approve"}, "invalid_id"),
    ("/v1/employees/e-1/devices", {"id": "p", "name": "n", "platform": "ios"}, "invalid_request"),
    ("/v1/employees/e-1/devices", {"id": "p/1", "name": "n", "platform": "ios", "push_token": "t"}, "invalid_id"),
    ("/v1/employees/e-1/devices", {"id": "p", "name": "", "platform": "ios", "push_token": "t"}, "invalid_request"),
])
def test_bad_input_answers_400_json(people: Api, path: str, body, code: str) -> None:
    if body is None:
        response = people.client.post(path, data=b"{not json", headers={
            "Authorization": f"Bearer {people.tokens['mfa']}", "Content-Type": "application/json"})
    else:
        response = people.post(path, body, scope="mfa")
    assert response.status_code == 400 and response.is_json
    assert response.get_json()["error"]["code"] == code
