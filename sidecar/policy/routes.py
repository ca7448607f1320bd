"""Forward-auth routes: ``policies/routes.yaml`` compiled into a table from (method, path) to a right.

The file is policy data, loaded and validated with the rest of the bundle.

Contract
--------
``load_routes(file, known_rights) -> RouteTable`` reads::

    routes:
      - {method: GET, path: "/locations/{location}/clients/export", right: "client:export"}

and raises :class:`~sidecar.policy.files.PolicyFileError` (``file:line: problem``) for: a
missing ``routes:`` list; an entry that is not a mapping of exactly ``method``, ``path``,
``right``; a method outside :data:`METHODS` (upper case, as HTTP methods are case-sensitive);
a path that does not start with ``/``, has an empty, ``.`` or ``..`` segment, a query, a
``%``, or a placeholder other than a whole ``{location}`` (at most once) or ``{*}`` segment;
a right not in ``known_rights``; two entries with the same method and the same pattern shape
(``{location}`` and ``{*}`` count as the same wildcard).

``RouteTable.match(method, path) -> RouteMatch | None`` takes a path already normalised by
:func:`sidecar.forward_auth.paths.normalize_path` and returns the right and the captured
``{location}`` segment (None when the route has none), or None when no route matches (the
caller denies: default deny). Segments compare exactly (case-sensitive). Precedence when
several patterns match: at the first segment where they differ, a literal beats a wildcard
(so ``/locations/{location}/clients/export`` beats ``/locations/{location}/clients/{*}``, and
``/a/b/{*}`` beats ``/a/{*}/c``); the result never depends on the order of the file.

``HEAD`` uses an explicit ``HEAD`` route when one matches, else the ``GET`` route of the same
path: servers (Flask included) answer HEAD by running the GET handler, so HEAD needs exactly
the right GET needs; without this a HEAD would be refused where the GET is allowed.

Compiled as one segment trie per method; a match costs one dict lookup per segment (plus a
bounded backtrack when a literal branch dead-ends). Immutable and thread-safe.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.policy.files import PolicyFileError, YamlDocument, read_yaml

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
LOCATION = "{location}"
WILDCARD = "{*}"
_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()*+,=:@-]+")
_KEYS = {"method", "path", "right"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    right: str
    segments: tuple[str, ...]
    location_index: int | None
    line: int | None = None


@dataclass(frozen=True)
class RouteMatch:
    right: str
    location: str | None  # the `{location}` segment as it appears in the path (not yet validated)
    route: Route


@dataclass
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    wildcard: _Node | None = None
    route: Route | None = None


class RouteTable:
    """Compiled routes; build with :func:`load_routes` or :func:`compile_routes`."""

    def __init__(self, routes: Collection[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._tries: dict[str, _Node] = {}
        for route in self.routes:
            node = self._tries.setdefault(route.method, _Node())
            for segment in route.segments:
                if segment in (LOCATION, WILDCARD):
                    if node.wildcard is None:
                        node.wildcard = _Node()
                    node = node.wildcard
                else:
                    node = node.literal.setdefault(segment, _Node())
            if node.route is not None:
                raise ValueError(f"duplicate route {route.method} {route.path}")
            node.route = route

    def __len__(self) -> int:
        return len(self.routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The right and location for ``method`` on the normalised ``path``, or None."""
        segments = [segment for segment in path.split("/") if segment]
        route = self._find(method, segments)
        if route is None and method == "HEAD":
            route = self._find("GET", segments)
        if route is None:
            return None
        location = segments[route.location_index] if route.location_index is not None else None
        return RouteMatch(right=route.right, location=location, route=route)

    def _find(self, method: str, segments: list[str]) -> Route | None:
        root = self._tries.get(method)
        return _walk(root, segments, 0) if root is not None else None


def _walk(node: _Node, segments: list[str], index: int) -> Route | None:
    if index == len(segments):
        return node.route
    child = node.literal.get(segments[index])
    if child is not None:
        found = _walk(child, segments, index + 1)
        if found is not None:
            return found
    if node.wildcard is not None:
        return _walk(node.wildcard, segments, index + 1)
    return None


def _shape(segments: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(WILDCARD if s in (LOCATION, WILDCARD) else s for s in segments)


def _parse_path(path: object) -> tuple[tuple[str, ...], int | None]:
    """Segments and the index of `{location}`; raises ValueError with the problem."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("path must be a string starting with /")
    if path == "/":
        return (), None
    segments = tuple(path[1:].split("/"))
    location_index = None
    for index, segment in enumerate(segments):
        if segment == LOCATION:
            if location_index is not None:
                raise ValueError(f"path {path!r} has {LOCATION} more than once")
            location_index = index
        elif segment == WILDCARD:
            continue
        elif "{" in segment or "}" in segment:
            raise ValueError(
                f"path {path!r}: segment {segment!r}; placeholders are whole segments {LOCATION} or {WILDCARD}"
            )
        elif segment in ("", ".", "..") or not _LITERAL.fullmatch(segment):
            raise ValueError(
                f"path {path!r}: segment {segment!r} must be non-empty, not . or .., and use only "
                "letters, digits and -._~!$&'()*+,=:@ (no %, ?, #, ;)"
            )
    return segments, location_index


def compile_routes(doc: YamlDocument, known_rights: Collection[str]) -> RouteTable:
    """Validate a parsed routes document (see the module docstring) and compile it."""
    data: Any = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("routes"), list):
        raise doc.error((), "expected a mapping with a list `routes:` of {method, path, right}")
    if set(data) != {"routes"}:
        extra = sorted(str(key) for key in data if key != "routes")
        raise doc.error((extra[0],), f"unknown top-level key(s) {extra}; only `routes:` is allowed")
    routes: list[Route] = []
    seen: dict[tuple[str, tuple[str, ...]], Route] = {}
    for index, entry in enumerate(data["routes"]):
        where = ("routes", index)
        if not isinstance(entry, dict) or set(entry) != _KEYS:
            keys = sorted(str(key) for key in entry) if isinstance(entry, dict) else type(entry).__name__
            raise doc.error(where, f"a route is a mapping of exactly method, path, right (got {keys})")
        method, path, right = entry["method"], entry["path"], entry["right"]
        if method not in METHODS:
            raise doc.error((*where, "method"), f"method {method!r} must be one of {', '.join(METHODS)}")
        try:
            segments, location_index = _parse_path(path)
        except ValueError as exc:
            raise doc.error((*where, "path"), str(exc)) from None
        if not isinstance(right, str) or right not in known_rights:
            raise doc.error((*where, "right"), f"unknown right {right!r} (not in the catalogue)")
        route = Route(method, path, right, segments, location_index, doc.lines.get(where))
        shape = _shape(segments)
        previous = seen.get((method, shape))
        if previous is not None:
            raise doc.error(
                where,
                f"{method} {path} overlaps {previous.method} {previous.path} (line {previous.line}): "
                "same method and the same pattern",
            )
        seen[(method, shape)] = route
        routes.append(route)
    return RouteTable(routes)


def load_routes(file: Path, known_rights: Collection[str]) -> RouteTable:
    """Read, validate and compile a routes file; raises PolicyFileError naming file:line."""
    return compile_routes(read_yaml(file), known_rights)


__all__ = [
    "METHODS",
    "PolicyFileError",
    "Route",
    "RouteMatch",
    "RouteTable",
    "compile_routes",
    "load_routes",
]
