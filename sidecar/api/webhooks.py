"""Webhook subscriptions of a chain or a standalone location (scope ``security``).

    PUT    /v1/chains/{chain}/webhooks/{name}        {"url", "categories": [...], "actions": [...], "secret"}
    PUT    /v1/locations/{location}/webhooks/{name}  the same, for a standalone location
    GET    .../webhooks                              -> {"webhooks": [subscription, ...]}
    GET    .../webhooks/{name}                       -> subscription + "deliveries" (counts, pending,
                                                        recent, dead letters with their last error)
    DELETE .../webhooks/{name}                       -> {"name", "deleted": true}; pending deliveries are cancelled

A PUT answers 200 with the subscription and ``"created"`` (false: it replaced one); the secret is never shown
(``"secret": "[set]"``). A location that belongs to a chain has no log of its own: 409
``in_chain`` (subscribe on the chain; the events carry their ``location``). The service and
its worker thread are the runtime's (``runtime.webhooks``); rules in :mod:`sidecar.webhooks.rules`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import check_ids, json_body, reply
from sidecar.errors import Conflict, NotFound
from sidecar.policy.tenant import Tenant
from sidecar.store.webhooks import Subscription
from sidecar.webhooks import rules
from sidecar.webhooks.service import WebhookService

bp = Blueprint("webhooks", __name__)


def _service() -> WebhookService:
    return current_runtime().webhooks


def _chain_log(chain: str) -> str:
    check_ids(chain=chain)
    if current_runtime().directory.chain(chain) is None:
        raise NotFound(f"chain {chain} does not exist")
    return Tenant.chain(chain)


def _location_log(location: str) -> str:
    check_ids(location=location)
    found = current_runtime().directory.location(location)
    if found is None:
        raise NotFound(f"location {location} does not exist")
    if found.chain:
        raise Conflict(f"location {location} belongs to chain {found.chain}: subscribe on the chain",
                       reason="in_chain", chain=found.chain)
    return found.tenant


def _public(subscription: Subscription) -> dict[str, Any]:
    return {**subscription.to_json(), "secret": "[set]"}


def _put(log: str, name: str) -> Response:
    check_ids(name=name)
    settings = current_runtime().settings
    url, categories, actions, secret = rules.check_body(json_body(), settings.webhook_allow_http,
                                                        settings.webhook_allow_private)
    now = datetime.now(UTC)
    subscription = Subscription(name, url, tuple(categories), tuple(actions), secret,
                                f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z")
    created = _service().store.put(log, subscription)
    return reply({**_public(subscription), "created": created})


def _get(log: str, name: str) -> Response:
    check_ids(name=name)
    store = _service().store
    subscription = store.get(log, name)
    if subscription is None:
        raise NotFound(f"no webhook named {name}")
    return reply({**_public(subscription), "deliveries": store.state(log, name)})


def _delete(log: str, name: str) -> Response:
    check_ids(name=name)
    if not _service().store.delete(log, name):
        raise NotFound(f"no webhook named {name}")
    return reply({"name": name, "deleted": True})


def _list(log: str) -> Response:
    return reply({"webhooks": [_public(s) for s in _service().store.all(log)]})


@bp.put("/v1/chains/<chain>/webhooks/<name>")
@require_scope("security")
def put_chain_webhook(chain: str, name: str) -> Any:
    return _put(_chain_log(chain), name)


@bp.put("/v1/locations/<location>/webhooks/<name>")
@require_scope("security")
def put_location_webhook(location: str, name: str) -> Any:
    return _put(_location_log(location), name)


@bp.get("/v1/chains/<chain>/webhooks/<name>")
@require_scope("security")
def get_chain_webhook(chain: str, name: str) -> Any:
    return _get(_chain_log(chain), name)


@bp.get("/v1/locations/<location>/webhooks/<name>")
@require_scope("security")
def get_location_webhook(location: str, name: str) -> Any:
    return _get(_location_log(location), name)


@bp.delete("/v1/chains/<chain>/webhooks/<name>")
@require_scope("security")
def delete_chain_webhook(chain: str, name: str) -> Any:
    return _delete(_chain_log(chain), name)


@bp.delete("/v1/locations/<location>/webhooks/<name>")
@require_scope("security")
def delete_location_webhook(location: str, name: str) -> Any:
    return _delete(_location_log(location), name)


@bp.get("/v1/chains/<chain>/webhooks")
@require_scope("security")
def list_chain_webhooks(chain: str) -> Any:
    return _list(_chain_log(chain))


@bp.get("/v1/locations/<location>/webhooks")
@require_scope("security")
def list_location_webhooks(location: str) -> Any:
    return _list(_location_log(location))
