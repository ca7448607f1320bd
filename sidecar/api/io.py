"""Reading requests at the edge: JSON bodies, ids, and small typed fields. Errors are 400s."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, request

from sidecar.errors import BadRequest, InvalidJson
from sidecar.policy.directory import check_id


def json_body() -> dict[str, Any]:
    return parse_json_object(request.get_data(cache=True))  # over MAX_CONTENT_LENGTH: werkzeug raises 413


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise InvalidJson("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidJson("the body must be a JSON object")
    return body


def ids(**values: str) -> None:
    """Validate path ids: 1-64 chars from [A-Za-z0-9._-], else 400 invalid_id."""
    for name, value in values.items():
        check_id(value, name)


def optional_bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false", field=name)
    return value


def optional_str(body: dict[str, Any], name: str, *, limit: int = 320) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"{name} must be a string of at most {limit} characters", field=name)
    return value


def reply(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")
