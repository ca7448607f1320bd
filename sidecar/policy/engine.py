"""The engine: the one module that speaks casbin.

One small casbin model per tenant, never one giant enforcer for everyone. A tenant's role
templates, custom roles, memberships and overrides become ``p`` and ``g`` lines of the model
in ``policies/model.conf`` (:meth:`TenantEngine.build_casbin`, the oracle of the tests; with one
member's lines, what ``?explain=1`` asks). An employee's **effective rights** at a location are
computed once per shape and cached, so a decision is a set lookup:

* what a role grants at a location is casbin's answer: ``enforce`` for a *holder* linked to the
  role there (``g holder:<subject>, <subject>, <location>``, so the hierarchy depth is an
  employee's), in a model of the tenant's roles only (templates, custom roles, inheritance, the
  holders), asked once per (role, location) for the rights its allow lines name;
* an employee's rights are then the set rule of ``model.conf`` (allow if some line allows, deny
  overrides) over what they hold there and chain-wide: the rights of their roles plus their
  allow overrides, minus their deny overrides (``resource:*`` expanded by the catalogue). Roles
  carry allow lines only, so this is exactly what the full model answers per employee
  (``tests/test_effective_rights_property.py`` checks it against :meth:`build_casbin`).

Asking the full model per shape cost an ``enforce`` per right scanning every employee's
override lines: minutes for a migrated 2,000-employee chain, where nearly every membership has a
shape of its own (issue 14). Only ids casbin holds lines for are ever handed to it (role
subjects and holders; members in ``explain``): an unknown id would leave a permanent entry in
casbin's role manager (see the anchors' findings).

Subject names inside casbin: ``role:<name>`` for a template, ``role:*/<name>`` for a chain's
custom role, ``role:<location>/<name>`` for a location's, ``holder:<subject>`` for a role's
holder, and the employee id itself (ids hold no ``:``, so none is taken for another).

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
from casbin.persist import Adapter

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
        answers = _set_rule_answers(model, enforcer)
    except Exception as exc:  # casbin raises bare exceptions of many kinds for a bad model
        line = _line_of(text, "m =")
        raise PolicyFileError(file, line, f"casbin cannot evaluate the model: {exc}") from None
    wrong = sorted(name for name, (answer, expected) in answers.items() if answer != expected)
    if wrong:
        raise PolicyFileError(file, _line_of(text, "e =") or _line_of(text, "m ="),
                              "the engine composes rights as roles (inherited, at * or the location) plus "
                              f"allows minus denies, and this model answers otherwise: {', '.join(wrong)}")


# A member e of role:r at l-1 (r inherits role:p there) with overrides, and what the set rule says.
_PROBE_P = [["role:p", "*", "x", "inherited", "allow"], ["role:r", "*", "x", "granted", "allow"],
            ["role:r", "*", "x", "denied", "allow"], ["e", "l-1", "x", "denied", "deny"],
            ["e", "*", "x", "allowed", "allow"], ["e", "l-2", "x", "elsewhere", "allow"],
            ["role:r", "l-2", "x", "role_elsewhere", "allow"], ["role:q", "*", "x", "not_held", "allow"],
            ["e", "*", "x", "denied_everywhere", "deny"], ["role:r", "*", "x", "denied_everywhere", "allow"]]
_PROBE_G = [["e", "role:r", "l-1"], ["role:r", "role:p", "l-1"], ["e", "role:q", "l-2"]]
_PROBE_EXPECTED = {"inherited": True, "granted": True, "denied": False, "allowed": True, "elsewhere": False,
                   "role_elsewhere": False, "not_held": False, "denied_everywhere": False}


def _set_rule_answers(model: FastModel, enforcer: casbin.FastEnforcer) -> dict[str, tuple[bool, bool]]:
    """casbin's answer and the set rule's for each probe right of member ``e`` at ``l-1``."""
    model.add_policies("p", "p", _PROBE_P)
    model.add_policies("g", "g", _PROBE_G)
    enforcer.build_role_links()
    return {act: (bool(enforcer.enforce("e", "l-1", "x", act)), expected) for act, expected in _PROBE_EXPECTED.items()}


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


_CHAIN_ROLE = _custom_subject(CHAIN_SCOPE, "")  # role:*/ : a chain's custom roles


def _location_role(subject: str) -> bool:
    """A location's own custom role (``role:<location>/<name>``), the only kind whose grants depend on where."""
    return "/" in subject and not subject.startswith(_CHAIN_ROLE)


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
    """One tenant's rights: what each role grants per location, and effective rights per (employee, location).

    Two members with the same *shape* at a location (the same roles and overrides there and
    chain-wide) hold the same rights, so each shape is computed once and each distinct set of
    rights kept once per process. The roles model (casbin) is built only while some shape is
    still unanswered, then let go.
    """

    def __init__(self, bundle: PolicyBundle, directory: TenantDirectory,
                 reuse: TenantEngine | None = None, changed_employees: Iterable[str] = (),
                 cache: EngineCache | None = None) -> None:
        self.bundle = bundle
        self.directory = directory
        self.cache: EngineCache = cache or (reuse.cache if reuse is not None else EngineCache())
        self._lock = threading.Lock()
        self._enforcer: casbin.FastEnforcer | None = None  # the roles model (_build_roles_casbin)
        self._allow_lines: dict[str, list[tuple[str, str]]] = {}  # subject -> (domain, right) of the roles model
        self._rights: dict[tuple[str, str], frozenset[str]] = {}
        self._by_shape: dict[Shape, frozenset[str]] = {}
        self._by_role: dict[tuple[str, str], frozenset[str]] = {}  # (subject, location or *) -> what it grants
        if reuse is not None and reuse.bundle is bundle:
            changed = set(changed_employees)
            self._rights = {k: v for k, v in reuse._rights.items() if k[0] not in changed}
            self._by_shape = dict(reuse._by_shape)  # role definitions did not change, so shapes still hold
            self._by_role = dict(reuse._by_role)
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
            self._enforcer = self._build_roles_casbin()
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

    def _role_lines(self, p_lines: list[list[str]], g_lines: list[list[str]]) -> None:
        """Templates, custom roles and their inheritance, as ``p`` and ``g`` lines."""
        d = self.directory
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

    def build_casbin(self, member: str | None = None) -> casbin.FastEnforcer:
        """A fresh casbin model of the tenant: its roles and every member's lines (the oracle of tests
        and benchmarks), or only ``member``'s, which answers that member exactly as the whole model
        does (no other member's line names them) and is what ``explain`` asks.

        pycasbin checks each added line against every line already there: the whole model of a
        2,000-member chain takes seconds to build, one member's a few milliseconds.
        """
        d = self.directory
        p_lines: list[list[str]] = []
        g_lines: list[list[str]] = []
        self._role_lines(p_lines, g_lines)
        for (employee, location), membership in d.memberships.items():
            if member is None or employee == member:
                self._membership_lines(employee, [location], location, membership, p_lines, g_lines)
        for employee, membership in d.chain_memberships.items():
            if member is None or employee == member:
                self._membership_lines(employee, sorted(d.locations), CHAIN_SCOPE, membership, p_lines, g_lines)
        return self._enforcer_of(p_lines, g_lines)

    def _build_roles_casbin(self) -> casbin.FastEnforcer:
        """The tenant's roles without its members: a holder of each role where a membership assigns it."""
        d = self.directory
        p_lines: list[list[str]] = []
        g_lines: list[list[str]] = []
        self._role_lines(p_lines, g_lines)
        held = {(role, location) for (_, location), m in d.memberships.items() for role in m.roles}
        held_chain_wide = {role for m in d.chain_memberships.values() for role in m.roles}
        for role, location in sorted(held):
            subject = self._subject(role, location)
            if subject:
                g_lines.append([_holder(subject), subject, location])
        for role in sorted(held_chain_wide):
            subject = self._subject(role, CHAIN_SCOPE)
            if subject:
                g_lines.extend([_holder(subject), subject, location] for location in sorted(d.locations))
        lines: dict[str, list[tuple[str, str]]] = {}
        for subject, domain, obj, act, _ in p_lines:  # roles carry allow lines only
            lines.setdefault(subject, []).append((domain, f"{obj}:{act}"))
        self._allow_lines = lines
        return self._enforcer_of(p_lines, g_lines)

    def _enforcer_of(self, p_lines: list[list[str]], g_lines: list[list[str]]) -> casbin.FastEnforcer:
        model = FastModel([2, 3])
        model.load_model_from_text(self.bundle.model_text)
        return casbin.FastEnforcer(model, _Lines(_unique(p_lines), _unique(g_lines)), cache_key_order=[2, 3])

    def _membership_lines(self, employee: str, locations: list[str], scope: str, membership: Membership,
                          p_lines: list[list[str]], g_lines: list[list[str]]) -> None:
        domain = ALL_LOCATIONS if scope == CHAIN_SCOPE else scope
        for role in membership.roles:
            subject = self._subject(role, scope)
            if subject:
                g_lines.extend([employee, subject, loc] for loc in locations)
        for effect, rights in (("allow", membership.allow), ("deny", membership.deny)):
            for right in self._expand(rights):
                obj, act = right.split(":", 1)
                p_lines.append([employee, domain, obj, act, effect])

    def _expand(self, names: Iterable[str]) -> Iterable[str]:
        return (r for named in names for r in self.bundle.catalogue.expand(named))

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
                    held = self.cache.intern(self._rights_of(shape))
                    self._by_shape[shape] = held
                    self._unanswered.discard(shape)
                    if not self._unanswered:
                        self._release_casbin()  # every member is answered: casbin's memory can go
                        self.cache.forget(self)
        self._rights[key] = held
        return held

    def _rights_of(self, shape: Shape) -> frozenset[str]:
        """The rights roles grant at the shape's location, plus allows, minus denies (deny wins)."""
        location, here, chain_wide = shape
        granted: set[str] = set()
        denied: set[str] = set()
        for scope, grants in ((location, here), (CHAIN_SCOPE, chain_wide)):
            if grants is None:
                continue
            roles, allow, deny = grants
            for role in roles:
                subject = self._subject(role, scope)
                if subject is not None:
                    granted |= self._granted_by(subject, location)
            granted.update(self._expand(allow))
            denied.update(self._expand(deny))
        return frozenset(granted - denied)

    def _granted_by(self, subject: str, location: str) -> frozenset[str]:
        """What holding the role ``subject`` at ``location`` grants: casbin asked for its holder (lock held).

        A template or a chain's role grants the same at every location (its lines have domain
        ``*`` and a chain role inherits only chain roles and templates, linked at every location),
        so it is asked once, at the first location it is needed; a location's role at its location.
        """
        key = (subject, location if _location_role(subject) else ALL_LOCATIONS)
        found = self._by_role.get(key)
        if found is None:
            enforcer = self._casbin()
            holder = _holder(subject)
            reached = {subject, *enforcer.get_implicit_roles_for_user(subject, location)}
            candidates = sorted({right for s in reached for domain, right in self._allow_lines.get(s, ())
                                 if domain in (ALL_LOCATIONS, location) and right in self.bundle.catalogue})
            found = frozenset(r for r in candidates if enforcer.enforce(holder, location, *r.split(":", 1)))
            self._by_role[key] = found
        return found

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
            enforcer = self.build_casbin(employee)  # explanations are rare: the model is not kept
            implicit = enforcer.get_implicit_roles_for_user(employee, location)
            matched: list[str] = []
            if right in self.bundle.catalogue and d.is_member(employee, location):
                _, matched = enforcer.enforce_ex(employee, location, *right.split(":", 1))
        for subject in sorted(implicit):  # casbin's order follows the order lines were added
            name = subject.removeprefix("role:")
            if not any(r["role"] == name.split("/")[-1] for r in roles):
                roles.append({"role": name.split("/")[-1], "scope": "inherited"})
        return Evidence(roles=roles, allow=allow, deny=deny, matched_rule=list(matched))


class _Lines(Adapter):  # type: ignore[misc]  # casbin is untyped
    """Lines handed to casbin the way its own adapters load a policy (one append per line).

    ``model.add_policies`` costs O(n) per line with the fast model (``FastPolicy.__len__`` walks
    every line), so a tenant's roles model took ~3 ms to build instead of ~0.7 ms (issue 10's
    cold first check).
    """

    def __init__(self, p_lines: list[list[str]], g_lines: list[list[str]]) -> None:
        self.lines: tuple[tuple[str, list[list[str]]], ...] = (("p", p_lines), ("g", g_lines))

    def load_policy(self, model: FastModel) -> None:
        for sec, lines in self.lines:
            policy = model.model[sec][sec].policy
            for line in lines:
                policy.append(line)
        self.lines = ()  # loaded once, at construction: the enforcer keeps its adapter, not the lists


def _holder(subject: str) -> str:
    """Who holds a role in the roles model (ids have no ``:``, so no employee is named so)."""
    return f"holder:{subject}"


def _grants(membership: Membership | None) -> tuple[tuple[str, ...], ...] | None:
    return None if membership is None else (membership.roles, membership.allow, membership.deny)


def _unique(lines: list[list[str]]) -> list[list[str]]:
    return [list(t) for t in dict.fromkeys(tuple(line) for line in lines)]
