"""One error edge for both pipelines: the fast path (/v1/check) and a Flask route answer alike.

Each case goes to ``POST /v1/check`` (answered by ``api.fast_path.DecisionRoutes``, before
Flask) and to ``POST /v1/audit/events`` (a Flask route); both must give the same status, error
code, body (up to the scope each route requires) and headers.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from sidecar.api.edge import MAX_BODY

ROUTES = {"/v1/check": "check", "/v1/audit/events": "audit"}  # route -> the scope it requires
RID = "parity-request-1"
OVERSIZE = b"[" + b" " * MAX_BODY + b"]"


def send(api, path: str, case: str) -> Any:
    scope = ROUTES[path]
    headers = {"X-Request-Id": RID, "Authorization": f"Bearer {api.tokens[scope]}"}
    method, body = "POST", b"{}"
    if case == "no_token":
        del headers["Authorization"]
    elif case == "bad_token":
        headers["Authorization"] = "Bearer not-a-token"
    elif case == "wrong_scope":
        headers["Authorization"] = f"Bearer {api.tokens['admin']}"
    elif case == "wrong_method":
        method = "GET"
    elif case == "body_too_large":
        body = OVERSIZE
    elif case == "bad_json":
        body = b'{"employee": '
    elif case == "json_not_an_object":
        body = b"[1, 2]"
    if case == "chunked_body_too_large":  # no Content-Length: the size is only known while reading
        headers["Transfer-Encoding"] = "chunked"
        # as gunicorn hands a chunked body on: de-chunked, the stream ending where the body does
        return api.client.open(path, method=method, headers=headers, input_stream=io.BytesIO(OVERSIZE),
                               environ_overrides={"wsgi.input_terminated": True})
    return api.client.open(path, method=method, headers=headers, data=body, content_type="application/json")


def normalised(body: dict[str, Any], scope: str) -> dict[str, Any]:
    """The body with the route's own scope name replaced, so two routes' refusals compare."""
    error = dict(body["error"])
    error["message"] = error["message"].replace(repr(scope), "'SCOPE'")
    if error.get("scope") == scope:
        error["scope"] = "SCOPE"
    return {"error": error}


@pytest.mark.parametrize(("case", "status", "code"), [
    ("no_token", 401, "unauthorized"),
    ("bad_token", 401, "unauthorized"),
    ("wrong_scope", 403, "forbidden"),
    ("wrong_method", 405, "method_not_allowed"),
    ("body_too_large", 413, "body_too_large"),
    ("chunked_body_too_large", 413, "body_too_large"),
    ("bad_json", 400, "invalid_json"),
    ("json_not_an_object", 400, "invalid_json"),
])
def test_the_fast_path_and_flask_answer_alike(api, case: str, status: int, code: str) -> None:
    fast, flask = (send(api, path, case) for path in ROUTES)
    for response, scope in ((fast, "check"), (flask, "audit")):
        assert response.status_code == status, (scope, response.get_json())
        assert response.get_json()["error"]["code"] == code
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["X-Request-Id"] == RID
        assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert normalised(fast.get_json(), "check") == normalised(flask.get_json(), "audit")
    assert sorted(fast.headers.keys()) == sorted(flask.headers.keys())
    if status == 405:
        assert "POST" in fast.headers["Allow"].split(", ") and "POST" in flask.headers["Allow"].split(", ")
