"""The OpenAPI document is the contract: schemathesis against a live `sidecar serve`.

Every operation in /openapi.json is called with generated inputs (bounded examples per
operation, fixed seed); each answer must be no server error, carry a documented status, the
documented content type, and a body valid against the documented response schema. A second
test checks that every route the app serves is in the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sidecar.api.forward_auth import METHODS as FORWARD_AUTH_METHODS
from sidecar.openapi import ROUTES, document
from tests.live_server import LiveServer, live_server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A `sidecar serve` with a little directory, so that some generated calls find something."""
    with live_server(tmp_path_factory.mktemp("openapi"), SIDECAR_MIN_REVISION_WAIT_S="0.05",
                     SIDECAR_JWT_SECRET="contract-test-secret-of-at-least-32-bytes") as server:
        for path, body in [("/v1/chains/ch-1", {}), ("/v1/locations/l-1", {"chain": "ch-1"}),
                           ("/v1/employees/e-1", {"active": True, "name": "Ann"}),
                           ("/v1/locations/l-1/employees/e-1", {"roles": ["owner"]})]:
            assert server.call(path, "PUT", body)[0] == 200
        yield server


CONTRACT = schemathesis.openapi.from_dict(document())
OPERATIONS = [result.ok() for result in CONTRACT.get_all_operations()]


@pytest.mark.e2e
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_every_operation_keeps_its_documented_contract(operation, live: LiveServer) -> None:

    @given(case=operation.as_strategy())
    @settings(max_examples=12, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=live.base, headers={"Authorization": f"Bearer {live.token}"}, checks=CHECKS)

    conforms()


def test_every_served_route_is_documented(app) -> None:
    documented = {(route.method.upper(), route.path) for route in ROUTES}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((method, path))
    served |= {("POST", "/v1/check"), ("POST", "/v1/check/batch")}  # the WSGI fast path, in front of Flask
    served |= {(method, path) for method in set(FORWARD_AUTH_METHODS) - {"HEAD", "OPTIONS"}  # and forward-auth
               for path in ("/v1/forward-auth", "/v1/forward-auth/{rest}")}
    assert served - documented == set()
    assert documented - served == set()


# Success answers, for real data: generated ids rarely hit what exists, so each documented 2xx
# schema is also checked against an answer that has content.
SUCCESS_CALLS = [
    ("GET", "/v1/roles", None),
    ("GET", "/v1/employees/e-1", None),
    ("GET", "/v1/chains/ch-1", None),
    ("GET", "/v1/locations/l-1", None),
    ("GET", "/v1/locations/l-1/employees/e-1", None),
    ("GET", "/v1/locations/l-1/employees", None),
    ("GET", "/v1/employees/e-1/memberships", None),
    ("GET", "/v1/locations/l-1/employees/e-1/rights", None),
    ("PUT", "/v1/chains/ch-1/roles/greeter", {"rights": ["calendar:view"]}),
    ("GET", "/v1/chains/ch-1/roles/greeter", None),
    ("GET", "/v1/chains/ch-1/roles", None),
    ("PUT", "/v1/employees/e-2", {"active": True}),
    ("PUT", "/v1/chains/ch-1/employees/e-2", {"roles": ["greeter"]}),
    ("GET", "/v1/chains/ch-1/employees", None),
    ("POST", "/v1/check", {"employee": "e-1", "location": "l-1", "resource": "appointment", "action": "create"}),
    ("POST", "/v1/check/batch", {"employee": "e-1", "location": "l-1",
                                 "checks": [{"resource": "appointment", "action": "create"}]}),
    ("POST", "/v1/audit/events", {"location": "l-1", "employee": "e-1", "action": "login.success",
                                  "outcome": "success"}),
    ("GET", "/v1/locations/l-1/security-events?viewer=e-1", None),
    ("GET", "/v1/billing/seats?chain=ch-1", None),
    ("GET", "/v1/billing/seats/history?chain=ch-1", None),
    ("POST", "/v1/billing/seats/preview", {"chain": "ch-1", "changes": [
        {"employee": "e-1", "location": "l-1", "membership": {"roles": ["marketer"]}}]}),
    ("DELETE", "/v1/chains/ch-1/employees/e-2", None),
    ("DELETE", "/v1/chains/ch-1/roles/greeter", None),
    ("DELETE", "/v1/employees/e-2", None),
]


def _schema_of(method: str, path: str) -> tuple[int, dict[str, object]]:
    route = next(r for r in ROUTES if r.method == method.lower() and re.fullmatch(
        re.sub(r"\{\w+\}", "[^/]+", r.path), path.split("?")[0]))
    assert route.response is not None
    return route.status, {"$ref": f"#/components/schemas/{route.response}", **document()}


@pytest.mark.e2e
def test_success_answers_match_their_documented_schemas(live: LiveServer) -> None:
    for method, path, body in SUCCESS_CALLS:
        status, answer = live.call(path, method, body)
        expected, schema = _schema_of(method, path)
        assert status == expected, (method, path, answer)
        jsonschema.Draft202012Validator(schema).validate(answer)
