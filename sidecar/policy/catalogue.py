"""The rights catalogue and the role templates, loaded from ``policies/`` as reviewed data."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from sidecar.policy.files import read_yaml

RIGHT_PATTERN = re.compile(r"[a-z][a-z0-9_]*:[a-z*][a-z0-9_]*")
BILLING_CLASSES = ("booking", "payment")
_FLAGS = {"billing", "writes", "critical", "requires_mfa"}


@dataclass(frozen=True)
class Right:
    name: str
    billing: str | None = None
    writes: bool = False
    critical: bool = False
    requires_mfa: bool = False

    @property
    def resource(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def action(self) -> str:
        return self.name.split(":", 1)[1]


@dataclass(frozen=True)
class Catalogue:
    rights: Mapping[str, Right]

    def __contains__(self, name: object) -> bool:
        return name in self.rights

    def __getitem__(self, name: str) -> Right:
        return self.rights[name]

    def names(self) -> list[str]:
        return list(self.rights)

    @cached_property
    def critical(self) -> frozenset[str]:
        """The rights flagged ``critical``: one set lookup per decision tells the audit listener
        whether a check needs an event (it asks on every check)."""
        return frozenset(r.name for r in self.rights.values() if r.critical)

    def unknown(self, names: Iterable[str]) -> list[str]:
        """Names that are neither a right nor ``resource:*`` for a resource with rights."""
        return sorted({name for name in names if not self.expand(name)})

    def expand(self, name: str) -> tuple[str, ...]:
        """The rights a name stands for: itself, or for ``resource:*`` (an override such as
        ``deny: [login:*]``) every right of that resource; empty when it names nothing."""
        if name in self.rights:
            return (name,)
        if name.endswith(":*"):
            return tuple(r for r in self.rights if r.startswith(name[:-1]))
        return ()

    def billable(self, rule: str) -> frozenset[str]:
        """Rights that make a seat paid: booking/payment ('announced'), or every write ('writes')."""
        if rule == "writes":
            return frozenset(r.name for r in self.rights.values() if r.writes or r.billing)
        return frozenset(r.name for r in self.rights.values() if r.billing in BILLING_CLASSES)


@dataclass(frozen=True)
class RoleTemplate:
    name: str
    rights: frozenset[str]


def load_catalogue(file: Path) -> Catalogue:
    doc = read_yaml(file)
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("rights"), dict):
        raise doc.error((), "expected a mapping `rights:` of resource:action to flags")
    rights: dict[str, Right] = {}
    for name, flags in doc.data["rights"].items():
        path = ("rights", str(name))
        if not isinstance(name, str) or not RIGHT_PATTERN.fullmatch(name):
            raise doc.error(path, f"right {name!r} is not resource:action in lower case")
        flags = flags or {}
        if not isinstance(flags, dict) or set(flags) - _FLAGS:
            raise doc.error(path, f"right {name}: flags must be a mapping of {sorted(_FLAGS)}")
        billing = flags.get("billing")
        if billing is not None and billing not in BILLING_CLASSES:
            raise doc.error(path, f"right {name}: billing must be booking or payment")
        for flag in ("writes", "critical", "requires_mfa"):
            if not isinstance(flags.get(flag, False), bool):
                raise doc.error(path, f"right {name}: {flag} must be true or false")
        rights[name] = Right(
            name=name,
            billing=billing,
            writes=flags.get("writes", False),
            critical=flags.get("critical", False),
            requires_mfa=flags.get("requires_mfa", False),
        )
    if not rights:
        raise doc.error(("rights",), "the catalogue is empty")
    return Catalogue(rights)


def load_role_templates(file: Path, catalogue: Catalogue) -> dict[str, RoleTemplate]:
    doc = read_yaml(file)
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("roles"), dict):
        raise doc.error((), "expected a mapping `roles:` of role name to its rights")
    raw: dict[str, dict[str, Any]] = doc.data["roles"]
    resolved: dict[str, frozenset[str]] = {}

    def resolve(name: str, trail: tuple[str, ...]) -> frozenset[str]:
        if name in resolved:
            return resolved[name]
        path = ("roles", name)
        if name in trail:
            raise doc.error(path, f"role {name}: inheritance cycle {' -> '.join((*trail, name))}")
        spec = raw[name]
        if not isinstance(spec, dict):
            raise doc.error(path, f"role {name}: expected `rights:` (a list or \"*\")")
        rights_spec = spec.get("rights", [])
        if rights_spec == "*":
            rights = set(catalogue.names())
        elif isinstance(rights_spec, list) and all(isinstance(r, str) for r in rights_spec):
            rights = set(rights_spec)
        else:
            raise doc.error((*path, "rights"), f"role {name}: rights must be a list of rights or \"*\"")
        excluded = spec.get("except", [])
        if not isinstance(excluded, list):
            raise doc.error((*path, "except"), f"role {name}: except must be a list")
        listed = rights_spec if isinstance(rights_spec, list) else []
        for key, values in (("rights", listed), ("except", excluded)):
            for index, right in enumerate(values):
                if right not in catalogue:
                    raise doc.error((*path, key, index), f"role {name}: unknown right {right!r}")
        rights -= set(excluded)
        inherits = spec.get("inherits", [])
        if not isinstance(inherits, list):
            raise doc.error((*path, "inherits"), f"role {name}: inherits must be a list")
        for index, parent in enumerate(inherits):
            if parent not in raw:
                raise doc.error((*path, "inherits", index), f"role {name}: inherits unknown role {parent!r}")
            rights |= resolve(parent, (*trail, name))
        resolved[name] = frozenset(rights)
        return resolved[name]

    templates = {}
    for name in raw:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
            raise doc.error(("roles", str(name)), f"role name {name!r} is not a valid id")
        templates[name] = RoleTemplate(name, resolve(name, ()))
    return templates


def covers(pattern: str, right: str) -> bool:
    """Whether an override entry (a right or ``resource:*``) applies to ``right``."""
    return pattern == right or (pattern.endswith(":*") and right.startswith(pattern[:-1]))


__all__ = ["Catalogue", "Right", "RoleTemplate", "covers", "load_catalogue", "load_role_templates"]
