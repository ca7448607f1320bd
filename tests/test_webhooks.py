"""Webhook alerts: subscriptions, signed deliveries, retries from the Redis queue, dead letters, SSRF."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from sidecar.app import create_app
from sidecar.webhooks import rules, service, signing
from tests.audit_support import report, seed
from tests.conftest import Api, make_settings, make_tokens, wait_until
from tests.webhook_receiver import Receiver

SECRET = "s3cret-for-webhooks-0123"


@pytest.fixture(autouse=True)
def quick_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The delivery worker's round every 20 ms instead of 250 ms, as the backoffs below are short:
    the same fan-out, claims, retries and dead letters, without waiting out a round per attempt."""
    monkeypatch.setattr(service, "POLL_S", 0.02)


@pytest.fixture
def hook_settings(tmp_path):
    return make_settings(tmp_path, webhook_allow_http=("127.0.0.1",), webhook_backoff_s=0.1,
                         webhook_max_backoff_s=0.4, webhook_max_attempts=200, webhook_timeout_s=2.0)


@pytest.fixture
def hook_api(hook_settings, redis_url):
    app = create_app(hook_settings, redis_url=redis_url)
    yield Api(app, make_tokens(hook_settings))
    app.extensions["sidecar"].stop()


def delivered(condition: Callable[[], bool]) -> None:
    """Wait for an outcome of background delivery work (liveness, not a speed claim)."""
    assert wait_until(condition, timeout_s=30)


def subscribe(api, url: str, *, path: str = "/v1/chains/ch-1/webhooks/soc", **body) -> dict:
    payload = {"url": url, "categories": ["export"], "actions": ["client:delete"], "secret": SECRET, **body}
    answer = api.put(path, payload, scope="security")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def deliveries(api) -> dict:
    return api.get("/v1/chains/ch-1/webhooks/soc", scope="security").get_json()["deliveries"]


def event_ids(receiver: Receiver) -> set[str]:
    return {orjson.loads(r["body"])["id"] for r in receiver.received()}


def export(api, n: int) -> str:
    answer = report(api, action="clients.export_finished", outcome="success", details={"n": n})
    assert answer.status_code == 202
    return answer.get_json()["id"]


@pytest.mark.e2e
def test_a_receiver_down_mid_stream_misses_nothing(hook_api, hook_settings, redis_url) -> None:
    seed(hook_api)
    receiver = Receiver().start()
    try:
        subscribe(hook_api, receiver.url)
        first = [export(hook_api, n) for n in range(10)]
        report(hook_api, action="appointment.edited", outcome="success")  # category edit: not subscribed
        delivered(lambda: event_ids(receiver) >= set(first))

        receiver.stop()  # the receiver goes away mid-stream
        before_outage = receiver.received()
        second = [export(hook_api, n) for n in range(10, 20)]
        def state() -> dict:
            return deliveries(hook_api)

        delivered(lambda: any((d["attempts"] or 0) >= 2 for d in state()["pending_deliveries"]))
        failed = state()["pending_deliveries"][0]
        assert failed["state"] == "pending" and "ConnectionRefusedError" in failed["last_error"]

        # the worker process goes too; a new one takes over the durable queue
        hook_api.app.extensions["sidecar"].stop()
        third_app = create_app(hook_settings, redis_url=redis_url)
        try:
            third = Api(third_app, hook_api.tokens)
            later = [export(third, n) for n in range(20, 25)]
            receiver = Receiver(port=receiver.port).start()  # back on the same port
            delivered(lambda: event_ids(receiver) >= set(second + later))
            got = {orjson.loads(r["body"])["id"] for r in before_outage} | event_ids(receiver)
            assert got == set(first + second + later)  # nothing else (the edit event) was sent
            answer = third.get("/v1/chains/ch-1/webhooks/soc", scope="security").get_json()["deliveries"]
            delivered(lambda: third.get("/v1/chains/ch-1/webhooks/soc", scope="security")
                       .get_json()["deliveries"]["pending"] == 0)
            assert answer["dead"] == 0
        finally:
            third_app.extensions["sidecar"].stop()
        for request in before_outage + receiver.received():
            headers = {k.lower(): v for k, v in request["headers"].items()}
            assert headers["content-type"] == "application/json"
            assert signing.verify(SECRET, headers["x-sidecar-signature"], request["body"])
            assert headers["x-sidecar-event-id"] == orjson.loads(request["body"])["id"]
            assert request["path"] == "/hooks/sidecar"
    finally:
        receiver.stop()


def test_two_workers_deliver_each_event_once(hook_api, hook_settings, redis_url) -> None:
    seed(hook_api)
    receiver = Receiver().start()
    other = create_app(hook_settings, redis_url=redis_url)
    try:
        subscribe(hook_api, receiver.url)
        sent = [export(hook_api, n) for n in range(15)]
        delivered(lambda: event_ids(receiver) >= set(sent))
        time.sleep(0.5)  # let any duplicate arrive before counting
        ids = [orjson.loads(r["body"])["id"] for r in receiver.received()]
        assert sorted(ids) == sorted(sent)
    finally:
        other.extensions["sidecar"].stop()
        receiver.stop()


def test_a_failing_receiver_ends_in_the_dead_letters_with_the_last_error(tmp_path, redis_url) -> None:
    settings = make_settings(tmp_path, webhook_allow_http=("127.0.0.1",), webhook_backoff_s=0.05,
                             webhook_max_backoff_s=0.1, webhook_max_attempts=3)
    app = create_app(settings, redis_url=redis_url)
    api = Api(app, make_tokens(settings))
    receiver = Receiver(status=500).start()
    try:
        seed(api)
        subscribe(api, receiver.url)
        event = export(api, 1)
        def get() -> dict:
            return deliveries(api)

        delivered(lambda: get()["dead"] == 1)
        (dead,) = get()["dead_letters"]
        assert (dead["event_id"], dead["state"], dead["attempts"]) == (event, "dead", 3)
        assert (dead["last_status"], dead["last_error"]) == (500, "HTTP 500")
        assert len(receiver.received()) == 3 and get()["pending"] == 0
    finally:
        receiver.stop()
        app.extensions["sidecar"].stop()


def test_redirects_are_not_followed(tmp_path, redis_url) -> None:
    settings = make_settings(tmp_path, webhook_allow_http=("127.0.0.1",), webhook_backoff_s=0.05,
                             webhook_max_backoff_s=0.1, webhook_max_attempts=2)
    app = create_app(settings, redis_url=redis_url)
    api = Api(app, make_tokens(settings))
    target = Receiver().start()
    redirector = Receiver(status=307, headers={"Location": target.url}).start()
    try:
        seed(api)
        subscribe(api, redirector.url)
        export(api, 1)
        def get() -> dict:
            return deliveries(api)

        delivered(lambda: get()["dead"] == 1)
        assert get()["dead_letters"][0]["last_error"] == "HTTP 307: redirects are not followed"
        assert target.received() == []
    finally:
        redirector.stop()
        target.stop()
        app.extensions["sidecar"].stop()


@pytest.mark.parametrize(("url", "ok"), [
    ("https://hooks.example.com/sidecar", True),
    ("http://127.0.0.1:9/x", True),  # the allow-listed host
    ("http://hooks.example.com/sidecar", False),
    ("http://169.254.169.254/latest/meta-data", False),
    ("https://user:pw@hooks.example.com/", False),
    ("ftp://hooks.example.com/", False),
    ("file:///etc/passwd", False),
    ("https:///nohost", False),
    ("https://hooks.example.com:99999/", False),
    ("javascript:alert(1)", False),
])
def test_the_ssrf_rule(hook_api, url, ok) -> None:
    seed(hook_api)
    answer = hook_api.put("/v1/chains/ch-1/webhooks/soc", {"url": url, "categories": ["export"], "secret": SECRET},
                          scope="security")
    if ok:
        assert answer.status_code == 200 and answer.get_json()["created"] is True
    else:
        assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "unsafe_url"


@pytest.mark.parametrize("body", [
    {"url": "https://h.example/", "categories": ["nope"], "secret": SECRET},
    {"url": "https://h.example/", "categories": [], "actions": [], "secret": SECRET},
    {"url": "https://h.example/", "categories": ["export"], "secret": "short"},
    {"url": "https://h.example/", "categories": ["export"]},
    {"url": "https://h.example/", "categories": "export", "secret": SECRET},
    {"url": "https://h.example/", "actions": ["bad action"], "secret": SECRET},
    {"url": "https://h.example/", "categories": ["export"], "secret": SECRET, "extra": 1},
])
def test_bad_bodies_are_400(hook_api, body) -> None:
    seed(hook_api)
    answer = hook_api.put("/v1/chains/ch-1/webhooks/soc", body, scope="security")
    assert answer.status_code == 400


def test_subscriptions_are_managed_per_chain_or_standalone_location(hook_api) -> None:
    seed(hook_api)
    made = subscribe(hook_api, "https://hooks.example.com/a")
    assert made["secret"] == "[set]" and SECRET not in str(made) and made["created"] is True and made["created"] is True
    replaced = hook_api.put("/v1/chains/ch-1/webhooks/soc", {"url": "https://hooks.example.com/b",
                                                             "categories": ["login"], "secret": SECRET},
                            scope="security")
    assert replaced.status_code == 200 and replaced.get_json()["url"] == "https://hooks.example.com/b"
    assert replaced.get_json()["created"] is False
    assert replaced.get_json()["created"] is False
    listed = hook_api.get("/v1/chains/ch-1/webhooks", scope="security").get_json()["webhooks"]
    assert [w["name"] for w in listed] == ["soc"] and SECRET not in str(listed)
    shown = hook_api.get("/v1/chains/ch-1/webhooks/soc", scope="security").get_json()
    assert shown["deliveries"]["pending"] == 0 and shown["secret"] == "[set]"

    solo = subscribe(hook_api, "https://hooks.example.com/solo", path="/v1/locations/l-9/webhooks/soc")
    assert solo["url"].endswith("/solo")
    in_chain = hook_api.put("/v1/locations/l-1/webhooks/soc", {"url": "https://h.example/", "categories": ["login"],
                                                               "secret": SECRET}, scope="security")
    assert in_chain.status_code == 409 and in_chain.get_json()["error"]["reason"] == "in_chain"
    assert hook_api.put("/v1/chains/nope/webhooks/soc", {}, scope="security").status_code == 404
    assert hook_api.get("/v1/chains/ch-1/webhooks/soc", scope="admin").status_code == 403
    assert hook_api.get("/v1/chains/ch-1/webhooks/missing", scope="security").status_code == 404

    assert hook_api.delete("/v1/chains/ch-1/webhooks/soc", scope="security").get_json() == {"name": "soc",
                                                                                          "deleted": True}
    assert hook_api.delete("/v1/chains/ch-1/webhooks/soc", scope="security").status_code == 404
    assert hook_api.get("/v1/chains/ch-1/webhooks", scope="security").get_json()["webhooks"] == []


def test_only_events_after_the_subscription_are_sent_and_a_critical_check_alerts(hook_api) -> None:
    seed(hook_api)
    before = export(hook_api, 0)
    receiver = Receiver().start()
    try:
        subscribe(hook_api, receiver.url)
        hook_api.check("e-1", "l-1", "client:delete")  # a critical check: journaled, shipped, then sent
        hook_api.check("e-1", "l-1", "login:password")  # category login: not subscribed
        delivered(lambda: any(orjson.loads(r["body"])["action"] == "client:delete" for r in receiver.received()))
        assert before not in event_ids(receiver)
        assert all(orjson.loads(r["body"])["action"] != "login:password" for r in receiver.received())
    finally:
        receiver.stop()


def test_signature_verification() -> None:
    body = b'{"id":"e1"}'
    header = signing.sign(SECRET, body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert signing.verify(SECRET, header, body, now=1_700_000_010)
    assert not signing.verify(SECRET, header, body + b" ", now=1_700_000_010)
    assert not signing.verify("another-secret-0000", header, body, now=1_700_000_010)
    assert not signing.verify(SECRET, header, body, now=1_700_001_000)  # too old: a replay
    assert not signing.verify(SECRET, "garbage", body)


# -- SSRF: addresses ---------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "https://127.0.0.1/x", "https://localhost/x", "https://10.1.2.3/", "https://172.16.0.9/", "https://192.168.1.1/",
    "https://169.254.169.254/latest/meta-data", "https://0.0.0.0/", "https://100.64.0.1/", "https://224.0.0.1/",
    "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[fe80::1]/", "https://[fd00::1]/", "https://[::]/",
    "http://localhost:9/x",  # not allow-listed for http either
])
def test_urls_resolving_to_internal_addresses_are_refused(api, url) -> None:
    seed(api)  # no allow-list: every host must resolve to public addresses only
    answer = api.put("/v1/chains/ch-1/webhooks/soc", {"url": url, "categories": ["export"], "secret": SECRET},
                     scope="security")
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["code"] == "unsafe_url" and answer.get_json()["error"]["field"] == "url"


def test_public_and_unresolvable_hosts_are_accepted_at_subscribe_time(hook_api) -> None:
    seed(hook_api)
    for url in ("https://93.184.216.34/hooks", "https://[2606:4700::1111]/hooks", "https://hooks.invalid/x"):
        answer = hook_api.put("/v1/chains/ch-1/webhooks/soc", {"url": url, "categories": ["export"],
                                                               "secret": SECRET}, scope="security")
        assert answer.status_code == 200, (url, answer.get_json())


def test_allow_private_names_an_internal_https_host(tmp_path, app_factory) -> None:
    settings = make_settings(tmp_path, webhook_allow_private=("LocalHost",))
    api = Api(app_factory(settings), make_tokens(settings))
    seed(api)
    ok = api.put("/v1/chains/ch-1/webhooks/soc", {"url": "https://localhost:8443/x", "categories": ["export"],
                                                  "secret": SECRET}, scope="security")
    assert ok.status_code == 200, ok.get_json()
    plain = api.put("/v1/chains/ch-1/webhooks/soc", {"url": "http://localhost:8443/x", "categories": ["export"],
                                                     "secret": SECRET}, scope="security")
    assert plain.status_code == 400  # http:// still needs SIDECAR_WEBHOOK_ALLOW_HTTP
    other = api.put("/v1/chains/ch-1/webhooks/soc", {"url": "https://127.0.0.1:8443/x", "categories": ["export"],
                                                     "secret": SECRET}, scope="security")
    assert other.status_code == 400  # only the named host


def test_the_address_is_checked_again_at_delivery(tmp_path, app_factory) -> None:
    """Subscribed while the host was allowed; the delivering worker resolves it again and refuses."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    strict = make_settings(tmp_path / "b", webhook_backoff_s=0.05, webhook_max_backoff_s=0.1)
    api = Api(app_factory(strict), make_tokens(strict))
    seed(api)
    allowed = make_settings(tmp_path / "a", webhook_allow_private=("localhost",))
    subscriber = Api(app_factory(allowed, start=False), make_tokens(allowed))  # no worker: it delivers nothing
    receiver = Receiver().start()
    try:
        subscribe(subscriber, f"https://localhost:{receiver.port}/hooks")
        export(api, 1)
        delivered(lambda: deliveries(api)["dead"] == 1)
        (dead,) = deliveries(api)["dead_letters"]
        assert dead["attempts"] == 1 and "resolves to a loopback address (127.0.0.1)" in dead["last_error"]
        assert receiver.received() == []
    finally:
        receiver.stop()


def test_a_host_that_does_not_resolve_is_retried_then_dead(tmp_path, app_factory) -> None:
    settings = make_settings(tmp_path, webhook_backoff_s=0.05, webhook_max_backoff_s=0.1, webhook_max_attempts=2)
    api = Api(app_factory(settings), make_tokens(settings))
    seed(api)
    subscribe(api, "https://hooks.invalid/x")
    export(api, 1)
    delivered(lambda: deliveries(api)["dead"] == 1)
    (dead,) = deliveries(api)["dead_letters"]
    assert dead["attempts"] == 2 and dead["last_error"].startswith("cannot resolve hooks.invalid")


def test_a_pinned_connection_goes_to_the_checked_address_with_the_host_name() -> None:
    receiver = Receiver().start()
    try:
        connection = service.connect_to("http", "hooks.invalid", receiver.port, "127.0.0.1", 5.0)
        try:
            connection.request("POST", "/hooks/sidecar", body=b"{}", headers={"Content-Type": "application/json"})
            assert connection.getresponse().status == 204
        finally:
            connection.close()
        (got,) = receiver.received()
        assert got["headers"]["Host"] == f"hooks.invalid:{receiver.port}"  # never resolved: the address was used
        assert isinstance(service.connect_to("https", "h.example", 443, "93.184.216.34", 5.0),
                          service.PinnedHTTPSConnection)
    finally:
        receiver.stop()


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"),  # noqa: S104
    ("::ffff:10.0.0.1", "private"), ("fe80::1%eth0", "link-local"), ("100.64.0.1", "not public"),
    ("93.184.216.34", None), ("2606:4700::1111", None),
])
def test_unsafe_address(address, reason) -> None:
    assert rules.unsafe_address(address) == reason
