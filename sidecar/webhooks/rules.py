"""What a webhook subscription may say: checked when it is stored and again before each delivery.

- **URL (SSRF).** ``https://`` anywhere, or ``http://`` only to a host named in
  ``SIDECAR_WEBHOOK_ALLOW_HTTP`` (a comma-separated list, e.g. a receiver on the same host).
  No user name or password in the URL, no fragment, at most 2048 characters. Deliveries never
  follow redirects (a 3xx is a failed attempt) and time out after
  ``SIDECAR_WEBHOOK_TIMEOUT_S``.
- **Filters.** ``categories`` from the audit categories and ``actions`` (names of events, e.g.
  ``client:export`` or ``login.new_device``); at least one of the two lists is non-empty. An
  event is sent when its category or its action is listed.
- **Secret.** 16 to 256 printable ASCII characters; it keys the signature and is never shown.

Imports: errors only.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from sidecar.errors import BadRequest

CATEGORIES = ("login", "export", "edit", "delete", "access", "security")
_ACTION = re.compile(r"[A-Za-z0-9:._*-]{1,64}")
_FIELDS = {"url", "categories", "actions", "secret"}


class UnsafeUrl(BadRequest):
    code = "unsafe_url"


def check_url(url: object, allow_http: Collection[str]) -> str:
    if not isinstance(url, str) or not url or len(url) > 2048 or not url.isascii() or not url.isprintable():
        raise UnsafeUrl("url must be an ASCII URL of at most 2048 characters", field="url")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError for a bad port
    except ValueError:
        raise UnsafeUrl("url is not a valid URL", field="url") from None
    if not host:
        raise UnsafeUrl("url needs a host", field="url")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise UnsafeUrl("url must not carry credentials or a fragment", field="url")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and host.lower() in {h.lower() for h in allow_http}:
        return url
    raise UnsafeUrl("url must be https:// (http:// only to hosts in SIDECAR_WEBHOOK_ALLOW_HTTP)", field="url")


def check_body(body: dict[str, Any], allow_http: Collection[str]) -> tuple[str, list[str], list[str], str]:
    """(url, categories, actions, secret) of a PUT body, or a 400 naming the field."""
    extra = sorted(set(body) - _FIELDS)
    if extra:
        raise BadRequest(f"unexpected fields {extra}", fields=extra)
    url = check_url(body.get("url"), allow_http)
    categories = _names(body, "categories")
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise BadRequest(f"unknown categories {unknown}; one of {', '.join(CATEGORIES)}", field="categories")
    actions = _names(body, "actions")
    if any(not _ACTION.fullmatch(a) for a in actions):
        raise BadRequest(f"actions must match {_ACTION.pattern}", field="actions")
    if not categories and not actions:
        raise BadRequest("list at least one category or action", field="categories")
    secret = body.get("secret")
    if not isinstance(secret, str) or not 16 <= len(secret) <= 256 or not secret.isascii() or not secret.isprintable():
        raise BadRequest("secret must be 16 to 256 printable ASCII characters", field="secret")
    return url, sorted(set(categories)), sorted(set(actions)), secret


def _names(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > 100:
        raise BadRequest(f"{name} must be a list of at most 100 strings", field=name)
    return list(value)
