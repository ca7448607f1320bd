"""Two-step authentication (scope ``mfa``): challenges by email or push, and employees' phones.

    POST   /v1/mfa/challenges                     {"employee", "channel", "device"?, "ip"?} -> 201
    GET    /v1/mfa/challenges/{id}                -> {"status", ...}
    POST   /v1/mfa/challenges/{id}/verify         {"code"} -> 200 {"status": "verified"}
    POST   /v1/mfa/challenges/{id}/approve        {"device_id", "decision": "approve" | "deny"}
    POST   /v1/employees/{employee}/devices       {"id", "name", "platform", "push_token"} -> 201 (200 replaced)
    GET    /v1/employees/{employee}/devices       -> {"devices": [...]} (without push tokens)
    DELETE /v1/employees/{employee}/devices/{id}  -> 204

Only reading the request and shaping the answer live here; the flows are in
:mod:`sidecar.mfa.service`. A 429 carries ``Retry-After``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from flask import Blueprint, Response, g

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import check_ids, json_body, reply, text_field
from sidecar.errors import BadRequest, RateLimited
from sidecar.mfa.service import TwoStep, expires_at
from sidecar.policy.directory import check_id
from sidecar.store.mfa.challenges import CHANNELS
from sidecar.store.mfa.devices import Device

bp = Blueprint("mfa", __name__)
DEVICE_FIELDS = ("id", "name", "platform", "user_agent")


def two_step() -> TwoStep:
    return current_runtime().two_step


@bp.errorhandler(RateLimited)
def _rate_limited(error: RateLimited) -> Response:
    response = reply(error.body(), error.status)
    response.headers["Retry-After"] = str(error.details["retry_after"])
    return response


# -- challenges ------------------------------------------------------------------------------
@bp.post("/v1/mfa/challenges")
@require_scope("mfa")
def create_challenge() -> Any:
    body = json_body()
    employee = check_id(body.get("employee"), "employee")
    channel = body.get("channel")
    if channel not in CHANNELS:
        raise BadRequest(f"channel must be one of {', '.join(CHANNELS)}", field="channel")
    challenge = two_step().start(employee, channel, _device(body.get("device")), _ip(body.get("ip")),
                                 g.get("request_id"))
    return reply({"challenge_id": challenge.id, "channel": challenge.channel,
                  "expires_at": expires_at(challenge)}, 201)


@bp.get("/v1/mfa/challenges/<challenge_id>")
@require_scope("mfa")
def challenge_status(challenge_id: str) -> Any:
    check_ids(challenge_id=challenge_id)
    return reply(two_step().status(challenge_id))


@bp.post("/v1/mfa/challenges/<challenge_id>/verify")
@require_scope("mfa")
def verify(challenge_id: str) -> Any:
    check_ids(challenge_id=challenge_id)
    code = json_body().get("code")
    if not isinstance(code, str) or not 0 < len(code) <= 32:
        raise BadRequest("code must be a string (the digits from the email)", field="code")
    two_step().verify(challenge_id, code, g.get("request_id"))
    return reply({"status": "verified"})


@bp.post("/v1/mfa/challenges/<challenge_id>/approve")
@require_scope("mfa")
def approve(challenge_id: str) -> Any:
    check_ids(challenge_id=challenge_id)
    body = json_body()
    device_id = check_id(body.get("device_id"), "device_id")
    decision = body.get("decision")
    if decision not in ("approve", "deny"):
        raise BadRequest("decision must be approve or deny", field="decision")
    challenge = two_step().answer(challenge_id, device_id, decision == "approve", g.get("request_id"))
    return reply({"status": challenge.stored_status})


# -- devices ---------------------------------------------------------------------------------
@bp.post("/v1/employees/<employee>/devices")
@require_scope("mfa")
def register_device(employee: str) -> Any:
    check_ids(employee=employee)
    body = json_body()
    device = Device(id=check_id(body.get("id"), "id"), name=text_field(body, "name", 200, printable=True),
                    platform=text_field(body, "platform", 32, printable=True),
                    push_token=text_field(body, "push_token", 4096, printable=True),
                    registered_at=two_step().now())
    created = two_step().register_device(employee, device, g.get("request_id"))
    return reply(device.public(), 201 if created else 200)


@bp.get("/v1/employees/<employee>/devices")
@require_scope("mfa")
def list_devices(employee: str) -> Any:
    check_ids(employee=employee)
    return reply({"devices": [d.public() for d in two_step().devices.all(employee)]})


@bp.delete("/v1/employees/<employee>/devices/<device_id>")
@require_scope("mfa")
def remove_device(employee: str, device_id: str) -> Any:
    check_ids(employee=employee, device_id=device_id)
    two_step().remove_device(employee, device_id, g.get("request_id"))
    return Response(status=204)


# -- reading the body ------------------------------------------------------------------------
def _device(value: object) -> dict[str, str]:
    """The device asking to sign in: a description string, or {"id", "name", "platform", "user_agent"}."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"name": text_field({"device": value}, "device", 200, printable=True)}
    if not isinstance(value, dict) or any(not isinstance(value.get(k, ""), str) for k in DEVICE_FIELDS):
        raise BadRequest("device must be a string or an object of strings id, name, platform, user_agent",
                         field="device")
    device = {k: value[k][:500] for k in DEVICE_FIELDS if value.get(k)}
    if not all(v.isprintable() for v in device.values()):
        raise BadRequest("device fields must be printable text", field="device")
    return device


def _ip(value: object) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        raise BadRequest("ip must be an IPv4 or IPv6 address", field="ip") from None
