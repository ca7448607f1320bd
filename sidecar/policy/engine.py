"""The engine: the one module that speaks casbin.

One small casbin model per tenant, never one giant enforcer for everyone. A tenant's role
templates, custom roles, memberships and overrides become ``p`` and ``g`` lines of the model
in ``policies/model.conf``; an employee's **effective rights** at a location are the catalogue
rights for which casbin's ``enforce`` allows, computed once per revision and cached, so a
decision is a set lookup. Only members are ever handed to casbin: an unknown id would leave
a permanent entry in casbin's role manager (see the anchors' findings).

Subject names inside casbin: ``role:<name>`` for a template, ``role:*/<name>`` for a chain's
custom role, ``role:<location>/<name>`` for a location's, and the employee id itself.

What is shared between engines (interned rights, the cap on live casbin models) lives in an
:class:`EngineCache` the owner passes in (the replica owns one per process); an engine built
without one gets its own, so nothing here is module-global.
"""

from __future__ import annotations

import configparser
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import casbin
from casbin.model import FastModel

from sidecar.policy.catalogue import covers
from sidecar.policy.directory import CHAIN_SCOPE, Membership, TenantDirectory
from sidecar.policy.files import PolicyFileError

if TYPE_CHECKING:  # the bundle validates models with this module; annotations only, no cycle
    from sidecar.policy.bundle import PolicyBundle

ALL_LOCATIONS = "*"
Shape = tuple[str, tuple[tuple[str, ...], ...] | None, tuple[tuple[str, ...], ...] | None]
_NONE: frozenset[str] = frozenset()
LIVE_MODELS = 32
# How explain() labels a role by where it was granted; never compared with a location id.
RoleScope = Literal["location", "chain", "inherited"]
_REQUIRED = {"request_definition": 4, "policy_definition": 5, "role_definition": None,
             "policy_effect": None, "matchers": None}
# casbin's constructor silences its own loggers; we keep it quiet the same way, once, here.
logging.getLogger("casbin").setLevel(logging.WARNING)


def validate_model(file: Path, text: str) -> None:
    """Refuse a model the engine cannot drive, naming the file and the offending line."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=str(file))
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        raise PolicyFileError(file, line, f"invalid model: {exc.message}") from None
    for section, arity in _REQUIRED.items():
        if not parser.has_section(section):
            raise PolicyFileError(file, None, f"model section [{section}] is missing")
        if arity is not None:
            key = "r" if section == "request_definition" else "p"
            tokens = [t.strip() for t in parser.get(section, key, fallback="").split(",") if t.strip()]
            if len(tokens) != arity:
                line = _line_of(text, f"{key} =") or _line_of(text, f"[{section}]")
                raise PolicyFileError(file, line, f"{key} must have {arity} fields, has {len(tokens)}")
    try:
        model = FastModel([2, 3])
        model.load_model_from_text(text)
        enforcer = casbin.FastEnforcer(model, None, cache_key_order=[2, 3])
        enforcer.enforce("probe", "probe", "probe", "probe")
    except Exception as exc:  # casbin raises bare exceptions of many kinds for a bad model
        line = _line_of(text, "m =")
        raise PolicyFileError(file, line, f"casbin cannot evaluate the model: {exc}") from None


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith(needle):
            return number
    return None


class EngineCache:
    """What the engines of one owner share: one object per distinct set of rights, and the
    at most ``live_models`` casbin models kept alive (the oldest is let go, rebuilt on need).

    A model is thousands of small objects; hundreds of half-answered tenants would keep them
    all and every full garbage collection would scan them. ``reset()`` forgets everything
    (tests and benchmarks start cold with it).
    """

    def __init__(self, live_models: int = LIVE_MODELS) -> None:
        self.live_models = live_models
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        self._live: OrderedDict[int, TenantEngine] = OrderedDict()
        self._lock = threading.Lock()

    def intern(self, rights: frozenset[str]) -> frozenset[str]:
        """One object per distinct set of rights (a handful, shared by thousands of members)."""
        return self._interned.setdefault(rights, rights)

    def keep_alive(self, engine: TenantEngine) -> None:
        with self._lock:
            self._live[id(engine)] = engine
            self._live.move_to_end(id(engine))
            while len(self._live) > self.live_models:
                _, oldest = self._live.popitem(last=False)
                oldest._release_casbin()

    def forget(self, engine: TenantEngine) -> None:
        with self._lock:
            self._live.pop(id(engine), None)

    def live(self) -> int:
        return len(self._live)

    def reset(self) -> None:
        with self._lock:
            for engine in self._live.values():
                engine._release_casbin()
            self._live.clear()
            self._interned.clear()


def _template_subject(name: str) -> str:
    return f"role:{name}"


def _custom_subject(scope: str, name: str) -> str:
    return f"role:{scope}/{name}"


@dataclass(frozen=True)
class Evidence:
    """Why a right is held or not: the explanation a caller sees with ``?explain=1``."""

    roles: list[dict[str, Any]]
    allow: list[str]
    deny: list[str]
    matched_rule: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"roles": self.roles, "overrides": {"allow": self.allow, "deny": self.deny},
                "matched_rule": self.matched_rule}


class TenantEngine:
    """One tenant's casbin model and its cache of effective rights per (employee, location).

    Two members with the same *shape* at a location (the same roles and overrides there and
    chain-wide) hold the same rights: casbin's answer depends on nothing else. So casbin is
    asked once per shape, each distinct set of rights is kept once per process, and the casbin
    model itself (the bulk of a tenant's memory) is built only while some shape is still
    unanswered, then let go.
    """

    def __init__(self, bundle: PolicyBundle, directory: TenantDirectory,
                 reuse: TenantEngine | None = None, changed_employees: Iterable[str] = (),
                 cache: EngineCache | None = None) -> None:
        self.bundle = bundle
        self.directory = directory
        self.cache: EngineCache = cache or (reuse.cache if reuse is not None else EngineCache())
        self._lock = threading.Lock()
        self._enforcer: casbin.FastEnforcer | None = None
        self._rights: dict[tuple[str, str], frozenset[str]] = {}
        self._by_shape: dict[Shape, frozenset[str]] = {}
        if reuse is not None and reuse.bundle is bundle:
            changed = set(changed_employees)
            self._rights = {k: v for k, v in reuse._rights.items() if k[0] not in changed}
            self._by_shape = dict(reuse._by_shape)  # role definitions did not change, so shapes still hold
        self._unanswered = self._shapes() - set(self._by_shape)

    def _shape(self, employee: str, location: str) -> Shape:
        return (location, _grants(self.directory.memberships.get((employee, location))),
                _grants(self.directory.chain_memberships.get(employee)))

    def _shapes(self) -> set[Shape]:
        d = self.directory
        pairs = set(d.memberships) | {(e, loc) for e in d.chain_memberships for loc in d.locations}
        return {self._shape(employee, location) for employee, location in pairs}

    def _casbin(self) -> casbin.FastEnforcer:
        if self._enforcer is None:
            self._enforcer = self.build_casbin()
            self.cache.keep_alive(self)
        return self._enforcer

    def _release_casbin(self) -> None:
        self._enforcer = None  # a computation in flight holds its own reference and finishes

    # -- building the model --------------------------------------------------------------
    def _subject(self, role: str, scope: str) -> str | None:
        found = self.directory.resolve_role(role, scope, self.bundle.templates)
        if found is None:
            return None  # a role deleted or renamed since: grants nothing (default deny)
        kind, name = found
        return _template_subject(name) if kind == "template" else _custom_subject(kind, name)

    def build_casbin(self) -> casbin.FastEnforcer:
        """A complete, fresh casbin model of the tenant (also the oracle of tests and benchmarks)."""
        d = self.directory
        p_lines: list[list[str]] = []
        g_lines: list[list[str]] = []
        for name, template in self.bundle.templates.items():
            for right in sorted(template.rights):
                obj, act = right.split(":", 1)
                p_lines.append([_template_subject(name), ALL_LOCATIONS, obj, act, "allow"])
        for (scope, name), role in d.custom_roles.items():
            subject = _custom_subject(scope, name)
            domain = ALL_LOCATIONS if scope == CHAIN_SCOPE else scope
            for right in (r for named in role.rights for r in self.bundle.catalogue.expand(named)):
                obj, act = right.split(":", 1)
                p_lines.append([subject, domain, obj, act, "allow"])
            domains = sorted(d.locations) if scope == CHAIN_SCOPE else [scope]
            for parent in role.inherits:
                parent_subject = self._subject(parent, scope)
                if parent_subject and parent_subject != subject:
                    g_lines.extend([subject, parent_subject, loc] for loc in domains)
        for (employee, location), membership in d.memberships.items():
            self._membership_lines(employee, [location], location, membership, p_lines, g_lines)
        for employee, membership in d.chain_memberships.items():
            self._membership_lines(employee, sorted(d.locations), CHAIN_SCOPE, membership, p_lines, g_lines)

        model = FastModel([2, 3])
        model.load_model_from_text(self.bundle.model_text)
        enforcer = casbin.FastEnforcer(model, None, cache_key_order=[2, 3])
        model.add_policies("p", "p", _unique(p_lines))
        if g_lines:
            model.add_policies("g", "g", _unique(g_lines))
        enforcer.build_role_links()
        return enforcer

    def _membership_lines(self, employee: str, locations: list[str], scope: str, membership: Membership,
                          p_lines: list[list[str]], g_lines: list[list[str]]) -> None:
        domain = ALL_LOCATIONS if scope == CHAIN_SCOPE else scope
        for role in membership.roles:
            subject = self._subject(role, scope)
            if subject:
                g_lines.extend([employee, subject, loc] for loc in locations)
        for effect, rights in (("allow", membership.allow), ("deny", membership.deny)):
            for right in (r for named in rights for r in self.bundle.catalogue.expand(named)):
                obj, act = right.split(":", 1)
                p_lines.append([employee, domain, obj, act, effect])

    # -- questions -------------------------------------------------------------------------
    def rights(self, employee: str, location: str) -> frozenset[str]:
        """Effective rights of a member at a location of this tenant (empty for non-members)."""
        key = (employee, location)
        cached = self._rights.get(key)
        if cached is not None:
            return cached
        if not self.directory.is_member(employee, location):
            return _NONE
        shape = self._shape(employee, location)
        held = self._by_shape.get(shape)
        if held is None:
            with self._lock:  # casbin's role manager is not safe for concurrent first lookups
                held = self._by_shape.get(shape)
                if held is None:
                    enforcer = self._casbin()
                    candidates = self._candidates(enforcer, employee, location)
                    held = self.cache.intern(frozenset(
                        r for r in candidates if enforcer.enforce(employee, location, *r.split(":", 1))))
                    self._by_shape[shape] = held
                    self._unanswered.discard(shape)
                    if not self._unanswered:
                        self._release_casbin()  # every member is answered: casbin's memory can go
                        self.cache.forget(self)
        self._rights[key] = held
        return held

    def _candidates(self, enforcer: casbin.FastEnforcer, employee: str, location: str) -> list[str]:
        """Rights some allow line could grant (casbin decides; this only skips hopeless asks)."""
        roles = enforcer.get_implicit_roles_for_user(employee, location)
        subjects = {employee, *roles}
        policy = enforcer.get_policy()
        found = {f"{p[2]}:{p[3]}" for p in policy
                 if p[0] in subjects and p[4] == "allow" and p[1] in (ALL_LOCATIONS, location)}
        return sorted(r for r in found if r in self.bundle.catalogue)

    def explain(self, employee: str, location: str, right: str) -> Evidence:
        d = self.directory
        roles: list[dict[str, Any]] = []
        allow: list[str] = []
        deny: list[str] = []
        granted: tuple[tuple[RoleScope, Membership | None], ...] = (
            ("location", d.memberships.get((employee, location))), ("chain", d.chain_memberships.get(employee)))
        for scope, membership in granted:
            if membership is None:
                continue
            roles.extend({"role": r, "scope": scope} for r in membership.roles)
            allow.extend(r for r in membership.allow if covers(r, right))
            deny.extend(r for r in membership.deny if covers(r, right))
        with self._lock:
            enforcer = self._enforcer or self.build_casbin()  # explanations are rare: no need to keep it
            implicit = enforcer.get_implicit_roles_for_user(employee, location)
            matched: list[str] = []
            if right in self.bundle.catalogue and d.is_member(employee, location):
                _, matched = enforcer.enforce_ex(employee, location, *right.split(":", 1))
        for subject in implicit:
            name = subject.removeprefix("role:")
            if not any(r["role"] == name.split("/")[-1] for r in roles):
                roles.append({"role": name.split("/")[-1], "scope": "inherited"})
        return Evidence(roles=roles, allow=allow, deny=deny, matched_rule=list(matched))


def _grants(membership: Membership | None) -> tuple[tuple[str, ...], ...] | None:
    return None if membership is None else (membership.roles, membership.allow, membership.deny)


def _unique(lines: list[list[str]]) -> list[list[str]]:
    return [list(t) for t in dict.fromkeys(tuple(line) for line in lines)]
