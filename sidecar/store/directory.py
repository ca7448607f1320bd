"""The directory in Redis, and its durable change log.

Layout (``T`` is a tenant: ``c:<chain>`` or ``l:<standalone location>``)::

    sc:emp:<E>            JSON employee              sc:emp:<E>:tenants  SET of tenants
    sc:loc:<L>            JSON {chain, owner}        sc:chain:<C>        JSON {owner}
    sc:t:<T>              HASH  loc:<L> | m:<L>:<E> | cm:<E> | role:<scope>:<R>  -> JSON
    sc:t:<T>:rev          the stream id of the tenant's last change (its revision)
    sidecar:changes       STREAM, one entry per write: tenants, kind, subject, employees

Every write runs under WATCH, is validated against what it read, then applied by one Lua
script that also appends the change entry and stamps the tenants' revisions: a write that
fails validation changes nothing, and a write is visible to a replica exactly when its change
entry is. The entry id is the write's ``revision``; ids only grow, so replicas compare them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from sidecar.errors import Conflict, NotFound, UnknownRight, UnknownRole
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import (
    CHAIN_SCOPE,
    Chain,
    CustomRole,
    Employee,
    Location,
    Membership,
    TenantDirectory,
    chain_tenant,
    validate_membership,
)
from sidecar.policy.tenant import NO_TENANT, Tenant
from sidecar.store.connection import translated_errors

CHANGES_STREAM = "sidecar:changes"
CHANGES_MAXLEN = 1_000_000
ALL_EMPLOYEES = "*"

_APPLY = """
local ops = cjson.decode(ARGV[1])
for _, op in ipairs(ops) do
  local c = op[1]
  if c == 'SET' then redis.call('SET', op[2], op[3])
  elseif c == 'DEL' then redis.call('DEL', op[2])
  elseif c == 'HSET' then redis.call('HSET', op[2], op[3], op[4])
  elseif c == 'HDEL' then redis.call('HDEL', op[2], op[3])
  elseif c == 'SADD' then redis.call('SADD', op[2], op[3])
  elseif c == 'SREM' then redis.call('SREM', op[2], op[3])
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', unpack(cjson.decode(ARGV[3])))
for _, t in ipairs(cjson.decode(ARGV[2])) do redis.call('SET', 'sc:t:' .. t .. ':rev', id) end
return id
"""

# A guard sees the tenant before and after the write and raises to refuse it (escalation).
Guard = Callable[[TenantDirectory, TenantDirectory], None]


@dataclass(frozen=True)
class WriteResult:
    revision: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    tenants: tuple[str, ...] = ()


def emp_key(employee: str) -> str:
    return f"sc:emp:{employee}"


def loc_key(location: str) -> str:
    return f"sc:loc:{location}"


def chain_key(chain: str) -> str:
    return f"sc:chain:{chain}"


def tenant_key(tenant: str) -> str:
    return f"sc:t:{tenant}"


def rev_key(tenant: str) -> str:
    return f"sc:t:{tenant}:rev"


def _loads(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else json.loads(raw)


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class _Write:
    """The operations of one write, applied atomically with its change entry."""

    def __init__(self) -> None:
        self.ops: list[list[str]] = []
        self.tenants: list[str] = []

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.ops.append(["SET", key, _dumps(value)])

    def delete(self, key: str) -> None:
        self.ops.append(["DEL", key])

    def hset(self, key: str, field: str, value: dict[str, Any] | str) -> None:
        self.ops.append(["HSET", key, field, value if isinstance(value, str) else _dumps(value)])

    def hdel(self, key: str, field: str) -> None:
        self.ops.append(["HDEL", key, field])

    def sadd(self, key: str, member: str) -> None:
        self.ops.append(["SADD", key, member])

    def srem(self, key: str, member: str) -> None:
        self.ops.append(["SREM", key, member])

    def touch(self, *tenants: str) -> None:
        self.tenants.extend(t for t in tenants if t not in self.tenants)


class DirectoryStore:
    def __init__(self, client: redis.Redis, bundle: Callable[[], PolicyBundle]) -> None:
        self.client = client
        self._bundle = bundle
        self._apply = client.register_script(_APPLY)

    # -- the write protocol ---------------------------------------------------------------
    def _run(self, watch: list[str], prepare: Callable[[redis.client.Pipeline], tuple[_Write, dict[str, Any]]],
             kind: str, subject: str, employees: str = ALL_EMPLOYEES) -> tuple[str, dict[str, Any], tuple[str, ...]]:
        with translated_errors():
            for _ in range(20):
                with self.client.pipeline() as pipe:
                    try:
                        pipe.watch(*watch)
                        write, extra = prepare(pipe)
                        if not write.tenants:
                            write.touch(NO_TENANT)
                        fields = ["kind", kind, "subject", subject, "tenants", " ".join(write.tenants),
                                  "employees", employees]
                        pipe.multi()
                        self._apply(keys=[CHANGES_STREAM],
                                    args=[json.dumps(write.ops), json.dumps(write.tenants), json.dumps(fields),
                                          CHANGES_MAXLEN], client=pipe)
                        (revision,) = pipe.execute()
                        return revision.decode(), extra, tuple(write.tenants)
                    except redis.WatchError:
                        continue
            raise Conflict("the directory changed concurrently too often; try again")

    def _get(self, pipe: Any, key: str) -> dict[str, Any] | None:
        return _loads(pipe.get(key))

    def _person(self, pipe: Any, employee: str, *, required: bool) -> Employee | None:
        raw = self._get(pipe, emp_key(employee))
        if raw is None and required:
            raise NotFound(f"employee {employee} does not exist", employee=employee)
        return None if raw is None else Employee(employee, raw["active"], raw.get("email"), raw.get("name"))

    # -- reads -------------------------------------------------------------------------------
    def employee(self, employee: str) -> Employee | None:
        with translated_errors():
            raw = _loads(self.client.get(emp_key(employee)))
        return None if raw is None else Employee(employee, raw["active"], raw.get("email"), raw.get("name"))

    def location(self, location: str, reader: Any = None) -> Location | None:
        with translated_errors():
            raw = _loads((reader or self.client).get(loc_key(location)))
        return None if raw is None else Location(location, raw.get("chain"), raw.get("owner"))

    def chain(self, chain: str, reader: Any = None) -> Chain | None:
        with translated_errors():
            raw = _loads((reader or self.client).get(chain_key(chain)))
        return None if raw is None else Chain(chain, raw.get("owner"))

    def membership(self, location: str, employee: str) -> Membership | None:
        loc = self.location(location)
        if loc is None:
            return None
        with translated_errors():
            raw = _loads(self.client.hget(tenant_key(loc.tenant), f"m:{location}:{employee}"))
        return None if raw is None else _membership(raw)

    def chain_membership(self, chain: str, employee: str) -> Membership | None:
        with translated_errors():
            raw = _loads(self.client.hget(tenant_key(chain_tenant(chain)), f"cm:{employee}"))
        return None if raw is None else _membership(raw)

    def custom_role(self, tenant: str, scope: str, role: str) -> CustomRole | None:
        with translated_errors():
            raw = _loads(self.client.hget(tenant_key(tenant), f"role:{scope}:{role}"))
        return None if raw is None else CustomRole(role, scope, tuple(raw["rights"]), tuple(raw["inherits"]))

    def revision(self, tenant: str) -> str:
        with translated_errors():
            raw = self.client.get(rev_key(tenant))
        return raw.decode() if raw else "0-0"

    def last_change(self) -> str:
        with translated_errors():
            entries = self.client.xrevrange(CHANGES_STREAM, count=1)
        return entries[0][0].decode() if entries else "0-0"

    def load_tenant(self, tenant: str, reader: Any = None) -> TenantDirectory:
        """Everything one tenant's decisions need, at the revision read with it."""
        reader = reader or self.client
        with translated_errors():
            if reader is self.client:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.hgetall(tenant_key(tenant))
                    pipe.get(rev_key(tenant))
                    fields, rev = pipe.execute()
            else:
                fields, rev = reader.hgetall(tenant_key(tenant)), reader.get(rev_key(tenant))
            directory = TenantDirectory(tenant=Tenant.parse(tenant), revision=rev.decode() if rev else "0-0",
                                        chain=None)
            location_ids: list[str] = []
            for raw_field, raw_value in fields.items():
                field = raw_field.decode()
                kind, _, rest = field.partition(":")
                if kind == "loc":
                    location_ids.append(rest)
                elif kind == "m":
                    location, _, employee = rest.partition(":")
                    directory.memberships[(employee, location)] = _membership(json.loads(raw_value))
                elif kind == "cm":
                    directory.chain_memberships[rest] = _membership(json.loads(raw_value))
                elif kind == "role":
                    scope, _, name = rest.partition(":")
                    raw = json.loads(raw_value)
                    directory.custom_roles[(scope, name)] = CustomRole(
                        name, scope, tuple(raw["rights"]), tuple(raw["inherits"]))
            if directory.tenant.is_chain:
                chain_id = directory.tenant.id
                directory.chain = self.chain(chain_id, reader) or Chain(chain_id)
            location_ids.sort()
            if location_ids:
                for location, raw in zip(location_ids, reader.mget([loc_key(x) for x in location_ids]), strict=True):
                    if raw is not None:
                        value = json.loads(raw)
                        directory.locations[location] = Location(location, value.get("chain"), value.get("owner"))
            members = sorted(directory.members())
            if members:
                for employee, raw in zip(members, reader.mget([emp_key(e) for e in members]), strict=True):
                    if raw is not None:
                        value = json.loads(raw)
                        directory.employees[employee] = Employee(
                            employee, value["active"], value.get("email"), value.get("name"))
        return directory

    # -- writes -----------------------------------------------------------------------------
    def put_employee(self, employee: Employee, guard: Guard | None = None) -> WriteResult:
        def prepare(pipe: Any) -> tuple[_Write, dict[str, Any]]:
            before = self._get(pipe, emp_key(employee.id))
            tenants = sorted(m.decode() for m in pipe.smembers(f"sc:emp:{employee.id}:tenants"))
            if guard:
                for tenant in tenants:
                    current = self.load_tenant(tenant, pipe)
                    changed = current.copy()
                    changed.employees[employee.id] = employee
                    guard(current, changed)
            write = _Write()
            after = {"active": employee.active, "email": employee.email, "name": employee.name}
            write.set(emp_key(employee.id), after)
            write.touch(*tenants)
            return write, {"before": before, "after": after}

        revision, extra, tenants = self._run([emp_key(employee.id), f"sc:emp:{employee.id}:tenants"], prepare,
                                             "employee", employee.id, employee.id)
        return WriteResult(revision, extra["before"], extra["after"], tenants)

    def put_chain(self, chain: Chain, guard: Guard | None = None) -> WriteResult:
        tenant = chain_tenant(chain.id)

        def prepare(pipe: Any) -> tuple[_Write, dict[str, Any]]:
            before = self._get(pipe, chain_key(chain.id))
            if guard:
                current = self.load_tenant(tenant, pipe)
                guard(current, current)
            write = _Write()
            after = {"owner": chain.owner}
            write.set(chain_key(chain.id), after)
            write.touch(tenant)
            return write, {"before": before, "after": after}

        revision, extra, tenants = self._run([chain_key(chain.id), rev_key(tenant)], prepare, "chain", chain.id)
        return WriteResult(revision, extra["before"], extra["after"], tenants)

    def put_location(self, location: Location, guard: Guard | None = None) -> WriteResult:
        """Create or change a location. Moving it to another chain moves its memberships."""
        new_tenant = location.tenant

        def prepare(pipe: Any) -> tuple[_Write, dict[str, Any]]:
            before = self._get(pipe, loc_key(location.id))
            old = Location(location.id, before.get("chain"), before.get("owner")) if before else None
            if old is not None:
                pipe.watch(rev_key(old.tenant))  # a membership written there meanwhile must move too
            if guard:
                current = self.load_tenant(old.tenant if old else new_tenant, pipe)
                guard(current, self._located(pipe, current, location, old))
            write = _Write()
            after = {"chain": location.chain, "owner": location.owner}
            write.set(loc_key(location.id), after)
            if location.chain and self._get(pipe, chain_key(location.chain)) is None:
                write.set(chain_key(location.chain), {"owner": None})
            write.hset(tenant_key(new_tenant), f"loc:{location.id}", "1")
            if old is not None and old.tenant != new_tenant:
                self._move_location(pipe, write, location.id, old.tenant, new_tenant)
            write.touch(new_tenant, *([old.tenant] if old else []))
            return write, {"before": before, "after": after}

        watch = [loc_key(location.id), rev_key(new_tenant)]
        if location.chain:
            watch.append(chain_key(location.chain))
        revision, extra, tenants = self._run(watch, prepare, "location", location.id)
        return WriteResult(revision, extra["before"], extra["after"], tenants)

    def _located(self, pipe: Any, current: TenantDirectory, location: Location,
                 old: Location | None) -> TenantDirectory:
        """The destination tenant as it would be after the write (for the escalation guard)."""
        moving = old is not None and old.tenant != location.tenant
        after = self.load_tenant(location.tenant, pipe).copy() if old is None or moving else current.copy()
        after.locations[location.id] = location
        if moving:
            for (employee, where), membership in current.memberships.items():
                if where == location.id:
                    after.memberships[(employee, where)] = membership
                    if employee in current.employees:
                        after.employees[employee] = current.employees[employee]
            for (scope, name), role in current.custom_roles.items():
                if scope == location.id:
                    after.custom_roles[(scope, name)] = role
        return after

    def _move_location(self, pipe: Any, write: _Write, location: str, old: str, new: str) -> None:
        write.hdel(tenant_key(old), f"loc:{location}")
        moved: set[str] = set()
        staying: set[str] = set()  # employees with another membership in the old tenant
        for raw_field, raw_value in pipe.hgetall(tenant_key(old)).items():
            field = raw_field.decode()
            if field.startswith((f"m:{location}:", f"role:{location}:")):
                write.hdel(tenant_key(old), field)
                write.hset(tenant_key(new), field, raw_value.decode())
                if field.startswith("m:"):
                    moved.add(field.rsplit(":", 1)[1])
            elif field.startswith("m:"):
                staying.add(field.rsplit(":", 1)[1])
            elif field.startswith("cm:"):
                staying.add(field[3:])
        for employee in moved:
            write.sadd(f"sc:emp:{employee}:tenants", new)
            if employee not in staying:
                write.srem(f"sc:emp:{employee}:tenants", old)

    def put_membership(self, location: str, employee: str, membership: Membership | None,
                       guard: Guard | None = None) -> WriteResult:
        """Set (or with None, remove) an employee's membership at one location."""

        def prepare(pipe: Any) -> tuple[_Write, dict[str, Any]]:
            loc = self.location(location, pipe)
            if loc is None:
                raise NotFound(f"location {location} does not exist", location=location)
            pipe.watch(rev_key(loc.tenant))  # read under WATCH: a concurrent move or write retries us
            person = self._person(pipe, employee, required=membership is not None)
            current = self.load_tenant(loc.tenant, pipe)
            directory = current.copy()
            if person is not None:
                directory.employees[employee] = person
            before = directory.memberships.get((employee, location))
            if membership is None and before is None:
                raise NotFound(f"employee {employee} has no membership at {location}")
            write = _Write()
            field = f"m:{location}:{employee}"
            if membership is None:
                write.hdel(tenant_key(loc.tenant), field)
                directory.memberships.pop((employee, location), None)
                if employee not in directory.members():
                    write.srem(f"sc:emp:{employee}:tenants", loc.tenant)
            else:
                self._validate_membership(directory, membership, location)
                directory.memberships[(employee, location)] = membership
                write.hset(tenant_key(loc.tenant), field, membership.to_json())
                write.sadd(f"sc:emp:{employee}:tenants", loc.tenant)
            if guard:
                guard(current, directory)
            write.touch(loc.tenant)
            return write, {"before": before.to_json() if before else None,
                           "after": membership.to_json() if membership else None}

        revision, extra, tenants = self._run([loc_key(location), emp_key(employee)], prepare, "membership",
                                             f"{location}/{employee}", employee)
        return WriteResult(revision, extra["before"], extra["after"], tenants)

    def put_chain_membership(self, chain: str, employee: str, membership: Membership | None,
                             guard: Guard | None = None) -> WriteResult:
        tenant = chain_tenant(chain)

        def prepare(pipe: Any) -> tuple[_Write, dict[str, Any]]:
            if self._get(pipe, chain_key(chain)) is None:
                raise NotFound(f"chain {chain} does not exist", chain=chain)
            person = self._person(pipe, employee, required=membership is not None)
            current = self.load_tenant(tenant, pipe)
            directory = current.copy()
            if person is not None:
                directory.employees[employee] = person
            before = directory.chain_memberships.get(employee)
            if membership is None and before is None:
                raise NotFound(f"employee {employee} has no chain-wide membership in {chain}")
            write = _Write()
            if membership is None:
                write.hdel(tenant_key(tenant), f"cm:{employee}")
                directory.chain_memberships.pop(employee, None)
                if employee not in directory.members():
                    write.srem(f"sc:emp:{employee}:tenants", tenant)
            else:
                self._validate_membership(directory, membership, CHAIN_SCOPE)
                directory.chain_memberships[employee] = membership
                write.hset(tenant_key(tenant), f"cm:{employee}", membership.to_json(chain_wide=True))
                write.sadd(f"sc:emp:{employee}:tenants", tenant)
            if guard:
                guard(current, directory)
            write.touch(tenant)
            return write, {"before": before.to_json(chain_wide=True) if before else None,
                           "after": membership.to_json(chain_wide=True) if membership else None}

        revision, extra, tenants = self._run([chain_key(chain), emp_key(employee), rev_key(tenant)], prepare,
                                             "chain_membership", f"{chain}/{employee}", employee)
        return WriteResult(revision, extra["before"], extra["after"], tenants)

    def put_custom_role(self, tenant: str, scope: str, role: CustomRole, guard: Guard | None = None) -> WriteResult:
        bundle = self._bundle()
        if role.name in bundle.templates:
            raise Conflict(f"{role.name} is a role template's name; choose another", role=role.name)
        unknown = bundle.catalogue.unknown(role.rights)
        if unknown:
            raise UnknownRight(f"unknown rights {unknown}", rights=unknown)

        def prepare(pipe: Any) -> tuple[_Write, dict[str, Any]]:
            current = self.load_tenant(tenant, pipe)
            directory = current.copy()
            if scope != CHAIN_SCOPE and scope not in directory.locations:
                raise NotFound(f"location {scope} does not exist", location=scope)
            before = directory.custom_roles.get((scope, role.name))
            directory.custom_roles[(scope, role.name)] = role
            for parent in role.inherits:
                if directory.resolve_role(parent, scope, bundle.templates) is None:
                    raise UnknownRole(f"role {role.name} inherits unknown role {parent}", role=parent)
            _check_no_cycle(directory, scope, role.name, set(bundle.templates))
            if guard:
                guard(current, directory)
            write = _Write()
            write.hset(tenant_key(tenant), f"role:{scope}:{role.name}", {"rights": list(role.rights),
                                                                         "inherits": list(role.inherits)})
            write.touch(tenant)
            return write, {"before": before.to_json() if before else None, "after": role.to_json()}

        revision, extra, tenants = self._run([rev_key(tenant)], prepare, "role", f"{tenant}/{scope}/{role.name}")
        return WriteResult(revision, extra["before"], extra["after"], tenants)

    def _validate_membership(self, directory: TenantDirectory, membership: Membership, scope: str) -> None:
        bundle = self._bundle()
        validate_membership(directory, membership, scope, bundle.catalogue.unknown, bundle.templates)


def _membership(raw: dict[str, Any]) -> Membership:
    return Membership(tuple(raw["roles"]), tuple(raw.get("allow", ())), tuple(raw.get("deny", ())),
                      bool(raw.get("provides_services", False)))


def _check_no_cycle(directory: TenantDirectory, scope: str, start: str, templates: set[str]) -> None:
    seen: set[tuple[str, str]] = set()
    stack = [(scope, start)]
    while stack:
        key = stack.pop()
        role = directory.custom_roles.get(key)
        if role is None:
            continue
        for parent in role.inherits:
            found = directory.resolve_role(parent, key[0], templates)
            if found is None or found[0] == "template":
                continue
            if found == (scope, start):
                raise Conflict(f"role {start} would inherit itself through {role.name}", role=start)
            if found not in seen:
                seen.add(found)
                stack.append(found)
