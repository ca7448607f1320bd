"""The original request behind a forward-auth call: which proxy sent it, its method, its path.

Contract
--------
``normalize_path(target) -> str`` turns a raw request-target (``/a/b?q#f``, exactly as the
client sent it, still percent-encoded) into the canonical path used for route matching, or
raises :class:`RequestRejected` (HTTP 403). The rule: *no trick reaches a route that the plain
path would not*. We do not try to guess how every upstream server interprets ambiguous input;
anything that servers are known to interpret differently is refused (default deny):

1. The target must be origin-form (start with ``/``) and at most 8 KiB; the query and the
   fragment are cut off (at the first ``?`` or ``#``) before anything is decoded.
2. Raw characters must be printable ASCII (``!``..``~``): no space, control, DEL or raw
   non-ASCII byte (clients must percent-encode them), and no raw ``\\`` (IIS and others treat
   it as ``/``): reasons ``bad_character`` / ``backslash``.
3. The path is split on ``/`` *first*, then each segment is percent-decoded exactly once. A
   ``%`` not followed by two hex digits is ``bad_escape``. A decoded segment may not contain
   ``/`` or ``\\`` (``%2F``/``%5C``: ``encoded_separator``; some servers decode them into
   separators, some do not), ``?`` or ``#`` (``encoded_delimiter``), ``%`` (``%25``, i.e.
   double encoding such as ``%252e``: ``double_encoding``; an upstream that decodes twice would
   see a different path), ``;`` (raw or ``%3B``: ``path_parameter``; Tomcat/Jetty strip
   ``;params`` so ``..;`` acts as ``..`` there), or a control character, C0, DEL or C1, e.g.
   ``%00`` (``control_character``).
4. Decoded bytes must be valid UTF-8 (``invalid_utf8``). A non-ASCII segment whose NFKC form
   is ``.``/``..`` or contains one of ``/ \\ ? # % ;`` is refused (``confusable_character``):
   a server that applies NFKC would otherwise see a separator or a dot segment.
5. Empty segments are dropped (``//`` collapses, a trailing ``/`` disappears), ``.`` segments
   are dropped, ``..`` removes the previous segment and never climbs above the root
   (RFC 3986 5.2.4). ``%2e``/``%2E`` are decoded first, so ``%2e%2e`` is ``..`` (RFC 3986 6.2.2.2).

The result is ``/`` + the decoded segments joined by ``/`` (``/`` for the root).
``literal_path`` keeps ``.`` and ``..`` as segments: how an upstream that routes the raw path
sees it. The caller refuses a target whose two forms match different routes (D21 of the
hardening report: ``/clients/export/..`` is ``/clients`` here, but an upstream routing
``/clients/export/<anything>`` would serve the export).

``original_request(method, target, headers, prefix) -> OriginalRequest`` finds the request the
proxy is asking about. Sources, each complete or absent:

* nginx ``auth_request``: ``X-Original-Method`` + ``X-Original-URI``;
* Traefik ForwardAuth: ``X-Forwarded-Method`` + ``X-Forwarded-Uri``;
* Envoy HTTP ``ext_authz``: the call's own method, and its target after ``prefix`` (Envoy sends
  ``path_prefix`` + the original ``:path``, query included), e.g.
  ``GET /v1/forward-auth/locations/l-1/clients``.

``target`` must be the *raw* request-target of the call to the sidecar (gunicorn:
``environ["RAW_URI"]``), never a WSGI ``PATH_INFO`` that the server already percent-decoded.
When several sources are present they must name the same method and normalised path, else
``ambiguous_original_request``: a client can inject the other proxy's headers (nginx and
Traefik pass client headers through to the auth call), and picking one by precedence would
let it choose what gets authorised. A source with only one of its two headers is
``incomplete_original_request``; none at all is ``missing_original_request``; a method that
is not an HTTP token is ``bad_method``. Methods are kept as sent (case-sensitive, RFC 9110).

Pure: no Flask, no Redis.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote_to_bytes

from sidecar.config import DEFAULT_FORWARD_AUTH_PREFIX
from sidecar.errors import Forbidden

MAX_TARGET_LENGTH = 8192

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_DELIMITERS = frozenset("/\\?#%;")
_QUERY_OR_FRAGMENT = re.compile(r"[?#]")
# A proxy asks about the same few paths over and over: their forms are remembered (a pure
# function of the path; a refusal is not remembered, it raises again). Bounded: at most this
# many paths of at most this length.
_CACHED_PATHS = 4096
_CACHED_PATH_LENGTH = 512
_SOURCES = (
    ("nginx", "x-original-method", "x-original-uri"),
    ("traefik", "x-forwarded-method", "x-forwarded-uri"),
)
ORIGINAL_REQUEST_HEADERS = tuple(name for _, *names in _SOURCES for name in names)  # all original_request reads


class RequestRejected(Forbidden):
    """The original request cannot be authorised as given (403). ``reason`` is snake_case."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


@dataclass(frozen=True)
class OriginalRequest:
    method: str
    path: str  # normalised, see normalize_path
    literal: str  # dot segments kept, see literal_path
    source: str  # "nginx" | "traefik" | "envoy"
    target: str  # the raw target it came from, for logs


def _segment(raw: str) -> str:
    if _BAD_ESCAPE.search(raw):
        raise RequestRejected("bad_escape", "a % must be followed by two hex digits")
    data = unquote_to_bytes(raw) if "%" in raw else raw.encode("ascii")
    if b"/" in data or b"\\" in data:
        raise RequestRejected("encoded_separator", "encoded / or \\ (%2F, %5C) is not accepted in a path")
    if b"%" in data:
        raise RequestRejected("double_encoding", "a percent-escape may not produce % (double encoding)")
    if b";" in data:
        raise RequestRejected("path_parameter", "path parameters (;) are not accepted")
    if b"?" in data or b"#" in data:
        raise RequestRejected("encoded_delimiter", "encoded ? or # is not accepted in a path")
    if any(byte < 0x20 or byte == 0x7F for byte in data):
        raise RequestRejected("control_character", "control characters are not accepted in a path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected("invalid_utf8", "the decoded path is not valid UTF-8") from None
    if not text.isascii():
        if any(unicodedata.category(char) == "Cc" for char in text):
            raise RequestRejected("control_character", "control characters are not accepted in a path")
        folded = unicodedata.normalize("NFKC", text)
        if folded != text and (folded in (".", "..") or not _DELIMITERS.isdisjoint(folded)):
            raise RequestRejected("confusable_character", "a character that folds to a delimiter or dot")
    return text


def normalize_path(target: str) -> str:
    """The canonical path of a raw request-target; see the module docstring for the rules."""
    return _paths(target)[0]


def literal_path(target: str) -> str:
    """The path as an upstream that does *not* remove dot segments would route it: the same
    checks and decoding as :func:`normalize_path`, empty segments dropped, but ``.`` and ``..``
    kept as ordinary segments. Equal to the normalised path unless the target has dot segments."""
    return _paths(target)[1]


def _paths(target: str) -> tuple[str, str]:
    if len(target) > MAX_TARGET_LENGTH:
        raise RequestRejected("too_long", f"request target longer than {MAX_TARGET_LENGTH} characters")
    path = _QUERY_OR_FRAGMENT.split(target, maxsplit=1)[0]
    if len(path) <= _CACHED_PATH_LENGTH:
        return _cached_forms(path)
    return _forms(path)


def _forms(path: str) -> tuple[str, str]:
    """The normalised and literal forms of a path (the target cut at ``?``/``#``), or RequestRejected."""
    if not path.startswith("/"):
        raise RequestRejected("not_origin_form", "the request target must start with /")
    for char in path:
        if not "!" <= char <= "~":
            raise RequestRejected("bad_character", "raw space, control or non-ASCII character in the path")
        if char == "\\":
            raise RequestRejected("backslash", "\\ is not accepted in a path")
    stack: list[str] = []
    literal: list[str] = []
    for raw in path.split("/"):
        segment = _segment(raw)
        if segment:
            literal.append(segment)
        if segment in ("", "."):
            continue
        if segment == "..":
            if stack:
                stack.pop()
            continue
        stack.append(segment)
    return "/" + "/".join(stack), "/" + "/".join(literal)


def _lower_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    lowered: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in lowered and lowered[key] != value:
            raise RequestRejected("ambiguous_original_request", f"header {name} given twice")
        lowered[key] = value
    return lowered


def _candidate(source: str, method: str, target: str) -> OriginalRequest:
    if not _METHOD.fullmatch(method):
        raise RequestRejected("bad_method", f"{source}: the original method is not an HTTP method")
    path, literal = _paths(target)
    return OriginalRequest(method=method, path=path, literal=literal, source=source, target=target)


def original_request(
    method: str,
    target: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    prefix: str = DEFAULT_FORWARD_AUTH_PREFIX,
) -> OriginalRequest:
    """The request the proxy asks about; see the module docstring. Raises RequestRejected."""
    lowered = _lower_headers(headers)
    candidates: list[OriginalRequest] = []
    for source, method_header, uri_header in _SOURCES:
        original_method = lowered.get(method_header)
        original_uri = lowered.get(uri_header)
        if original_method is None and original_uri is None:
            continue
        if original_method is None or original_uri is None:
            raise RequestRejected(
                "incomplete_original_request", f"{source}: both {method_header} and {uri_header} are needed"
            )
        candidates.append(_candidate(source, original_method, original_uri))
    prefix = prefix.rstrip("/")
    own_path = re.split(r"[?#]", target, maxsplit=1)[0]
    if own_path.startswith(prefix + "/"):
        candidates.append(_candidate("envoy", method, target[len(prefix) :]))
    if not candidates:
        raise RequestRejected(
            "missing_original_request",
            "no original request: send X-Original-Method/X-Original-URI, X-Forwarded-Method/"
            f"X-Forwarded-Uri, or the original path after {prefix or '/'}",
        )
    first = candidates[0]
    for other in candidates[1:]:
        if (other.method, other.path) != (first.method, first.path):
            raise RequestRejected(
                "ambiguous_original_request",
                f"{first.source} and {other.source} name different original requests",
            )
    return first


_cached_forms = lru_cache(maxsize=_CACHED_PATHS)(_forms)
