"""The rights catalogue and role templates of DOMAIN.md, embedded, and effective rights.

The bench computes the answers it expects from the sidecar on its own, from this copy, so a
wrong answer shows up in the preflight instead of being measured. :func:`drift_from_policies`
compares the copy with ``policies/catalogue.yaml`` and ``policies/roles.yaml`` so the two
cannot part silently.

Effective rights at a location (DOMAIN.md): the rights of the roles held there and of the
chain-wide roles, plus allow overrides, minus deny overrides (deny wins); none if inactive.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# right -> flags that change a check's answer or cost (critical: audited; requires_mfa: denied
# without context.mfa)
CATALOGUE: dict[str, frozenset[str]] = {
    "calendar:view": frozenset(),
    "appointment:create": frozenset(),
    "appointment:edit": frozenset(),
    "appointment:delete": frozenset({"critical"}),
    "schedule:edit": frozenset(),
    "client:view": frozenset(),
    "client:view_contacts": frozenset(),
    "client:create": frozenset(),
    "client:edit": frozenset(),
    "client:delete": frozenset({"critical"}),
    "client:export": frozenset({"critical", "requires_mfa"}),
    "client:import": frozenset({"critical"}),
    "payment:process": frozenset(),
    "payment:refund": frozenset({"critical"}),
    "deposit:topup": frozenset(),
    "discount:override": frozenset({"critical"}),
    "loyalty:adjust": frozenset({"critical"}),
    "cashdesk:operate": frozenset(),
    "finance:view": frozenset(),
    "finance:manage": frozenset({"critical"}),
    "finance:export": frozenset({"critical", "requires_mfa"}),
    "payroll:view": frozenset(),
    "payroll:manage": frozenset(),
    "report:view": frozenset(),
    "report:export": frozenset({"critical", "requires_mfa"}),
    "inventory:view": frozenset(),
    "inventory:manage": frozenset(),
    "marketing:send": frozenset(),
    "review:manage": frozenset(),
    "catalog:manage": frozenset(),
    "settings:manage": frozenset({"critical"}),
    "employee:manage": frozenset({"critical"}),
    "access:manage": frozenset({"critical", "requires_mfa"}),
    "billing:manage": frozenset(),
    "security_log:read": frozenset({"critical"}),
    "security_log:export": frozenset({"critical", "requires_mfa"}),
    "security:manage": frozenset({"critical", "requires_mfa"}),
    "login:password": frozenset({"critical"}),
    "login:mfa": frozenset({"critical"}),
}
ALL_RIGHTS = frozenset(CATALOGUE)
# checks of these record no audit event and need no MFA: what a bench of decision speed asks
PLAIN_RIGHTS = tuple(right for right, flags in CATALOGUE.items() if not flags)

# fmt: off
_VIEWER = frozenset({
    "calendar:view", "client:view", "finance:view", "payroll:view", "report:view", "inventory:view",
})
ROLE_RIGHTS: dict[str, frozenset[str]] = {
    "owner": ALL_RIGHTS,
    "manager": ALL_RIGHTS - {"billing:manage", "security:manage"},
    "administrator": frozenset({
        "calendar:view", "appointment:create", "appointment:edit", "appointment:delete", "schedule:edit",
        "client:view", "client:view_contacts", "client:create", "client:edit", "payment:process",
        "deposit:topup", "discount:override", "cashdesk:operate", "inventory:view", "marketing:send",
    }),
    "call_center": frozenset({
        "calendar:view", "appointment:create", "appointment:edit", "appointment:delete",
        "client:view", "client:view_contacts", "client:create", "client:edit",
    }),
    "service_provider": frozenset({
        "calendar:view", "appointment:create", "appointment:edit", "client:view", "payroll:view",
    }),
    "accountant": frozenset({
        "calendar:view", "finance:view", "finance:manage", "finance:export", "payroll:view",
        "payroll:manage", "report:view", "report:export",
    }),
    "marketer": frozenset({
        "client:view", "client:view_contacts", "client:export", "report:view", "marketing:send",
        "catalog:manage", "review:manage",
    }),
    "smm_manager": frozenset({"client:view", "review:manage", "marketing:send", "report:view"}),
    "viewer": _VIEWER,
    "system_manager": _VIEWER | {
        "employee:manage", "access:manage", "billing:manage", "security_log:read", "security:manage",
    },
}
# fmt: on


def rights_of(roles: Iterable[str]) -> frozenset[str]:
    """Union of the templates' rights; an unknown role grants nothing."""
    granted: set[str] = set()
    for role in roles:
        granted |= ROLE_RIGHTS.get(role, frozenset())
    return frozenset(granted)


def effective_rights(
    *, active: bool, memberships: Iterable[tuple[Iterable[str], Iterable[str], Iterable[str]]]
) -> frozenset[str]:
    """Rights from (roles, allow, deny) of the location's and the chain's memberships; deny wins."""
    if not active:
        return frozenset()
    granted: set[str] = set()
    denied: set[str] = set()
    for roles, allow, deny in memberships:
        granted |= rights_of(roles) | set(allow)
        denied |= set(deny)
    return frozenset(granted - denied)


def decide(right: str, effective: frozenset[str], *, mfa: bool = False) -> bool:
    """The expected answer of one check without context (``mfa`` false unless given)."""
    if right not in effective:
        return False
    return mfa or "requires_mfa" not in CATALOGUE[right]


def drift_from_policies(policy_dir: Path) -> list[str]:
    """Differences between this copy and the repo's ``catalogue.yaml`` / ``roles.yaml`` (empty: none)."""
    import yaml  # the sidecar's dependency; only needed for this check

    catalogue_file, roles_file = policy_dir / "catalogue.yaml", policy_dir / "roles.yaml"
    if not (catalogue_file.exists() and roles_file.exists()):
        return [f"no catalogue.yaml / roles.yaml in {policy_dir}"]
    rights = yaml.safe_load(catalogue_file.read_text())["rights"]
    problems: list[str] = []
    if set(rights) != ALL_RIGHTS:
        problems.append(f"catalogue rights differ: {sorted(set(rights) ^ ALL_RIGHTS)}")
    for right, flags in rights.items():
        declared = {flag for flag in ("critical", "requires_mfa") if (flags or {}).get(flag)}
        if right in CATALOGUE and declared != CATALOGUE[right]:
            problems.append(f"{right}: flags {sorted(declared)} in policies, {sorted(CATALOGUE[right])} here")
    templates = yaml.safe_load(roles_file.read_text())["roles"]

    def resolve(name: str) -> set[str]:
        spec = templates[name]
        listed = spec.get("rights", [])
        got = set(rights) if listed == "*" else set(listed)
        got -= set(spec.get("except", []))
        for parent in spec.get("inherits", []):
            got |= resolve(parent)
        return got

    if set(templates) != set(ROLE_RIGHTS):
        problems.append(f"role templates differ: {sorted(set(templates) ^ set(ROLE_RIGHTS))}")
    for name in set(templates) & set(ROLE_RIGHTS):
        if resolve(name) != ROLE_RIGHTS[name]:
            problems.append(f"role {name}: {sorted(resolve(name) ^ ROLE_RIGHTS[name])} differ")
    return problems
