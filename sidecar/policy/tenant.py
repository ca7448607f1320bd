"""A tenant: a chain, or a standalone location (the unit loaded, cached and evaluated together).

A tenant is written ``c:<chain>`` or ``l:<location>``; that text is its name in Redis keys, in
the change log, in audit log ids and in metrics. :class:`Tenant` *is* that text (a ``str``
subclass, so it travels as a key or a JSON field unchanged) and the one place that builds and
parses it: ``Tenant.chain("ch-1")``, ``Tenant.location("l-1")``, ``Tenant.parse("c:ch-1")``, then
``.kind`` (``"chain"`` | ``"location"``) and ``.id``. Nowhere else slices ``"c:"`` or ``"l:"``.

:data:`NO_TENANT` is the change log's marker for a write that touched no tenant (an employee
with no memberships); it is not a tenant and ``Tenant.parse`` refuses it.

Imports nothing from the sidecar.
"""

from __future__ import annotations

from typing import Final, Literal

TenantKind = Literal["chain", "location"]
NO_TENANT: Final = "_"
_PREFIX: Final[dict[str, TenantKind]] = {"c:": "chain", "l:": "location"}


class Tenant(str):
    __slots__ = ()

    def __new__(cls, raw: str) -> Tenant:
        if raw[:2] not in _PREFIX or len(raw) < 3:
            raise ValueError(f"not a tenant: {raw!r} (expected c:<chain> or l:<location>)")
        return super().__new__(cls, raw)

    @classmethod
    def parse(cls, raw: str) -> Tenant:
        """The tenant written ``raw``; ValueError if it is not ``c:<id>`` or ``l:<id>``."""
        return raw if isinstance(raw, Tenant) else cls(raw)

    @classmethod
    def chain(cls, chain: str) -> Tenant:
        return cls(f"c:{chain}")

    @classmethod
    def location(cls, location: str) -> Tenant:
        """The tenant of a standalone location (a location in a chain belongs to the chain's)."""
        return cls(f"l:{location}")

    @property
    def kind(self) -> TenantKind:
        return _PREFIX[self[:2]]

    @property
    def id(self) -> str:
        return self[2:]

    @property
    def is_chain(self) -> bool:
        return self.startswith("c:")

    def where(self) -> dict[str, str]:
        """``{"chain": id}`` or ``{"location": id}``: how an event or a reply names the tenant."""
        return {self.kind: self.id}
