"""What a webhook subscription may say: checked when it is stored and again before each delivery.

- **URL (SSRF).** ``https://`` anywhere, or ``http://`` only to a host named in
  ``SIDECAR_WEBHOOK_ALLOW_HTTP`` (a comma-separated list, e.g. a receiver on the same host).
  No user name or password in the URL, no fragment, at most 2048 characters. Deliveries never
  follow redirects (a 3xx is a failed attempt) and time out after
  ``SIDECAR_WEBHOOK_TIMEOUT_S``.
- **Addresses (SSRF).** The host is resolved and every address it resolves to must be a
  public one: loopback, private (RFC 1918, ULA), link-local (cloud metadata at
  169.254.169.254), unspecified, shared (100.64/10), multicast and reserved addresses are
  refused, IPv4-mapped IPv6 included (:func:`unsafe_address`). Checked when the subscription
  is stored (:func:`check_address`) and again at each delivery, whose connection then goes to
  the very address that was checked (:func:`resolve_public`): a name re-pointed after the check
  (DNS rebinding) cannot reach an internal address. Hosts the operator named are trusted as
  they are: those in ``SIDECAR_WEBHOOK_ALLOW_HTTP`` and ``SIDECAR_WEBHOOK_ALLOW_PRIVATE`` (an
  ``https://`` receiver on an internal network) skip the address rule. A name that does not
  resolve when it is stored is accepted (it may be created later); each delivery resolves it
  again and nothing is sent until it resolves to public addresses only.
- **Filters.** ``categories`` from the audit categories and ``actions`` (names of events, e.g.
  ``client:export`` or ``login.new_device``); at least one of the two lists is non-empty. An
  event is sent when its category or its action is listed.
- **Secret.** 16 to 256 printable ASCII characters; it keys the signature and is never shown.

Imports: errors only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from sidecar.errors import BadRequest

CATEGORIES = ("login", "export", "edit", "delete", "access", "security")
_ACTION = re.compile(r"[A-Za-z0-9:._*-]{1,64}")
_FIELDS = {"url", "categories", "actions", "secret"}


class UnsafeUrl(BadRequest):
    code = "unsafe_url"


class Unresolvable(Exception):
    """The host does not resolve now (no DNS, no such name): a delivery waits and tries again."""


def unsafe_address(address: str) -> str | None:
    """Why a webhook may not connect to ``address`` (``"loopback"``, ``"private"``, ...), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for reason, flagged in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                            ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                            ("private", ip.is_private), ("reserved", ip.is_reserved),
                            ("not public", not ip.is_global)):
        if flagged:
            return reason
    return None


def trusted(host: str, allow_http: Collection[str], allow_private: Collection[str]) -> bool:
    """Hosts the operator named: the address rule does not apply to them."""
    lowered = host.lower()
    return any(lowered == h.lower() for h in (*allow_http, *allow_private))


def resolve_public(host: str, port: int) -> str:
    """The address to connect to: the first one ``host`` resolves to, if every one is public.

    Raises UnsafeUrl when any address is not public, Unresolvable when the name does not resolve.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise Unresolvable(f"cannot resolve {host}: no address")
    for address in addresses:
        reason = unsafe_address(address)
        if reason is not None:
            raise UnsafeUrl(f"url host {host} resolves to a {reason} address ({address}); webhooks reach public "
                            "addresses only (name the host in SIDECAR_WEBHOOK_ALLOW_PRIVATE to allow it)",
                            field="url")
    return addresses[0]


def check_address(url: str, allow_http: Collection[str], allow_private: Collection[str]) -> None:
    """At subscribe time: 400 ``unsafe_url`` when the URL's host resolves to a non-public address.

    ``url`` has passed :func:`check_url`. A name that does not resolve now is accepted: every
    delivery resolves it again (:func:`resolve_public`) before connecting.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if trusted(host, allow_http, allow_private):
        return
    try:
        resolve_public(host, parts.port or (443 if parts.scheme == "https" else 80))
    except Unresolvable:
        return


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


def check_body(body: dict[str, Any], allow_http: Collection[str],
               allow_private: Collection[str] = ()) -> tuple[str, list[str], list[str], str]:
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
    check_address(url, allow_http, allow_private)  # last: the only check that may wait for DNS
    return url, sorted(set(categories)), sorted(set(actions)), secret


def _names(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > 100:
        raise BadRequest(f"{name} must be a list of at most 100 strings", field=name)
    return list(value)
