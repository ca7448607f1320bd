"""The directory in Redis, and its durable change log.

Layout (``T`` is a :class:`~sidecar.policy.tenant.Tenant`: ``c:<chain>`` or ``l:<standalone location>``)::

    sc:emp:<E>            JSON employee              sc:emp:<E>:tenants  SET of tenants
    sc:loc:<L>            JSON {chain, owner}        sc:chain:<C>        JSON {owner}
    sc:t:<T>              HASH  loc:<L> | m:<L>:<E> | cm:<E> | role:<scope>:<R>  -> JSON
    sc:t:<T>:rev          the stream id of the tenant's last change (its revision)
    sidecar:changes       STREAM, one entry per write: tenants, kind, subject, employees

Every write runs under WATCH, is validated against what it read, then applied by one Lua
script that also appends the change entry and stamps the tenants' revisions: a write that
fails validation changes nothing, and a write is visible to a replica exactly when its change
entry is. The entry id is the write's ``revision``; ids only grow, so replicas compare them.
The rules a write must pass are :mod:`sidecar.policy.rules` (the bulk importer uses the same).

Key and field names come from the functions below (``emp_key``, ``tenants_key``,
``membership_field``...), and each record kind has one encoder and one decoder, so the layout
is spelled once; nothing outside ``store/`` reads these keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from sidecar.errors import Conflict, NotFound
from sidecar.policy.bundle import PolicyBundle
from sidecar.policy.directory import (
    CHAIN_SCOPE,
    Chain,
    CustomRole,
    Employee,
    Location,
    Membership,
    TenantDirectory,
)
from sidecar.policy.migration import PlannedEmployee, apply_plan, scope_of
from sidecar.policy.rules import check_designated_owner, check_role_unused, validate_custom_role, validate_membership
from sidecar.policy.tenant import NO_TENANT, Tenant
from sidecar.store.connection import translated_errors
from sidecar.store.replication import acknowledged

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
# The check of a write to an employee who is a member nowhere: their stored record (or None) and
# the acting employee's tenants.
UnplacedGuard = Callable[[dict[str, Any] | None, list[TenantDirectory]], None]


class _Unchanged(Exception):
    """A write that would change nothing (a migration re-run): nothing is written."""


@dataclass(frozen=True)
class MigratedChange:
    kind: str  # employee | membership | chain_membership
    subject: dict[str, str]
    before: dict[str, Any] | None
    after: dict[str, Any]


@dataclass(frozen=True)
class MigratedTenant:
    """One tenant's migration write: its revision (None: nothing differed) and what changed."""

    tenant: str
    revision: str | None
    changes: list[MigratedChange]


@dataclass(frozen=True)
class WriteResult:
    revision: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    tenants: tuple[str, ...] = ()


def emp_key(employee: str) -> str:
    return f"sc:emp:{employee}"


def tenants_key(employee: str) -> str:
    """The SET of tenants where the employee holds a membership."""
    return f"sc:emp:{employee}:tenants"


def loc_key(location: str) -> str:
    return f"sc:loc:{location}"


def chain_key(chain: str) -> str:
    return f"sc:chain:{chain}"


def tenant_key(tenant: str) -> str:
    return f"sc:t:{tenant}"


def rev_key(tenant: str) -> str:
    return f"sc:t:{tenant}:rev"


def location_field(location: str) -> str:
    return f"loc:{location}"


def membership_field(scope: str, employee: str) -> str:
    """A membership's field in its tenant's hash: ``m:<location>:<E>``, or ``cm:<E>`` chain-wide."""
    return f"cm:{employee}" if scope == CHAIN_SCOPE else f"m:{scope}:{employee}"


def role_field(scope: str, name: str) -> str:
    return f"role:{scope}:{name}"


# -- records: one encoder and one decoder per kind ------------------------------------------------
def encode(value: dict[str, Any]) -> str:
    """A record as stored: compact JSON with sorted keys."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _loads(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else orjson.loads(raw)


def employee_record(employee: Employee) -> dict[str, Any]:
    return {"active": employee.active, "email": employee.email, "name": employee.name}


def _employee(employee: str, raw: dict[str, Any]) -> Employee:
    return Employee(employee, raw["active"], raw.get("email"), raw.get("name"))


def location_record(location: Location) -> dict[str, Any]:
    return {"chain": location.chain, "owner": location.owner}


def _location(location: str, raw: dict[str, Any]) -> Location:
    return Location(location, raw.get("chain"), raw.get("owner"))


def chain_record(chain: Chain) -> dict[str, Any]:
    return {"owner": chain.owner}


def _chain(chain: str, raw: dict[str, Any]) -> Chain:
    return Chain(chain, raw.get("owner"))


def membership_record(membership: Membership, scope: str) -> dict[str, Any]:
    return membership.to_json(chain_wide=scope == CHAIN_SCOPE)


def _membership(raw: dict[str, Any]) -> Membership:
    return Membership(tuple(raw["roles"]), tuple(raw.get("allow", ())), tuple(raw.get("deny", ())),
                      bool(raw.get("provides_services", False)))


def role_record(role: CustomRole) -> dict[str, Any]:
    return {"rights": list(role.rights), "inherits": list(role.inherits)}


def _custom_role(name: str, scope: str, raw: dict[str, Any]) -> CustomRole:
    return CustomRole(name, scope, tuple(raw["rights"]), tuple(raw["inherits"]))


class _Write:
    """The operations of one write, applied atomically with its change entry, and what it changed."""

    def __init__(self, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
        self.ops: list[list[str]] = []
        self.tenants: list[str] = []
        self.before = before
        self.after = after

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.ops.append(["SET", key, encode(value)])

    def delete(self, key: str) -> None:
        self.ops.append(["DEL", key])

    def hset(self, key: str, field: str, value: dict[str, Any] | str) -> None:
        self.ops.append(["HSET", key, field, value if isinstance(value, str) else encode(value)])

    def hdel(self, key: str, field: str) -> None:
        self.ops.append(["HDEL", key, field])

    def sadd(self, key: str, member: str) -> None:
        self.ops.append(["SADD", key, member])

    def srem(self, key: str, member: str) -> None:
        self.ops.append(["SREM", key, member])

    def touch(self, *tenants: str) -> None:
        self.tenants.extend(t for t in tenants if t not in self.tenants)


class DirectoryStore:
    def __init__(self, client: redis.Redis[bytes], bundle: Callable[[], PolicyBundle], *, min_replicas: int = 0,
                 wait_timeout_s: float = 1.0) -> None:
        self.client = client
        self._bundle = bundle
        self._apply = client.register_script(_APPLY)
        self._min_replicas = min_replicas  # a write is acknowledged once this many replicas hold it
        self._wait_timeout_s = wait_timeout_s

    # -- the write protocol ---------------------------------------------------------------
    def _run(self, watch: list[str], prepare: Callable[[Any], _Write], kind: str, subject: str,
             employees: str = ALL_EMPLOYEES) -> WriteResult:
        with translated_errors(), acknowledged(self.client, self._min_replicas, self._wait_timeout_s) as client:
            for _ in range(20):
                with client.pipeline() as pipe:
                    try:
                        pipe.watch(*watch)
                        write = prepare(pipe)
                        if not write.tenants:
                            write.touch(NO_TENANT)
                        fields = ["kind", kind, "subject", subject, "tenants", " ".join(write.tenants),
                                  "employees", employees]
                        pipe.multi()
                        self._apply(keys=[CHANGES_STREAM],
                                    args=[json.dumps(write.ops), json.dumps(write.tenants), json.dumps(fields),
                                          CHANGES_MAXLEN], client=pipe)
                        (revision,) = pipe.execute()
                        return WriteResult(revision.decode(), write.before, write.after, tuple(write.tenants))
                    except redis.WatchError:
                        continue
            raise Conflict("the directory changed concurrently too often; try again")

    def announce(self, tenants: list[str], kind: str, subject: str) -> str:
        """Append change entries naming ``tenants`` (200 a entry) for data written outside :meth:`_run`
        (the bulk import): every replica reloads them. Answers the last entry's revision."""
        revision = "0-0"
        with translated_errors():
            for start in range(0, max(len(tenants), 1), 200):
                chunk = tenants[start:start + 200] or [NO_TENANT]
                fields = ["kind", kind, "subject", subject, "tenants", " ".join(chunk), "employees", ALL_EMPLOYEES]
                revision = self._apply(keys=[CHANGES_STREAM],
                                       args=["[]", json.dumps(chunk), json.dumps(fields), CHANGES_MAXLEN]).decode()
        return revision

    def _get(self, pipe: Any, key: str) -> dict[str, Any] | None:
        return _loads(pipe.get(key))

    def _person(self, pipe: Any, employee: str, *, required: bool) -> Employee | None:
        raw = self._get(pipe, emp_key(employee))
        if raw is None and required:
            raise NotFound(f"employee {employee} does not exist", employee=employee)
        return None if raw is None else _employee(employee, raw)

    # -- reads -------------------------------------------------------------------------------
    def employee(self, employee: str) -> Employee | None:
        with translated_errors():
            raw = _loads(self.client.get(emp_key(employee)))
        return None if raw is None else _employee(employee, raw)

    def tenants_of(self, employee: str) -> list[Tenant]:
        """The tenants where the employee holds a membership, sorted."""
        with translated_errors():
            raw = self.client.smembers(tenants_key(employee))
        return sorted(Tenant.parse(t.decode()) for t in raw)

    def location(self, location: str, reader: Any = None) -> Location | None:
        with translated_errors():
            raw = _loads((reader or self.client).get(loc_key(location)))
        return None if raw is None else _location(location, raw)

    def chain(self, chain: str, reader: Any = None) -> Chain | None:
        with translated_errors():
            raw = _loads((reader or self.client).get(chain_key(chain)))
        return None if raw is None else _chain(chain, raw)

    def membership(self, location: str, employee: str) -> Membership | None:
        loc = self.location(location)
        if loc is None:
            return None
        with translated_errors():
            raw = _loads(self.client.hget(tenant_key(loc.tenant), membership_field(location, employee)))
        return None if raw is None else _membership(raw)

    def chain_membership(self, chain: str, employee: str) -> Membership | None:
        with translated_errors():
            raw = _loads(self.client.hget(tenant_key(Tenant.chain(chain)), membership_field(CHAIN_SCOPE, employee)))
        return None if raw is None else _membership(raw)

    def custom_role(self, tenant: str, scope: str, role: str) -> CustomRole | None:
        with translated_errors():
            raw = _loads(self.client.hget(tenant_key(tenant), role_field(scope, role)))
        return None if raw is None else _custom_role(role, scope, raw)

    def revision(self, tenant: str) -> str:
        with translated_errors():
            raw = self.client.get(rev_key(tenant))
        return raw.decode() if raw else "0-0"

    def tenants(self) -> list[Tenant]:
        """Every tenant in the directory (a recount after a policy reload or a rule change)."""
        with translated_errors():
            keys = [k.decode() for k in self.client.scan_iter(match="sc:t:*", count=1000)]
        return sorted(Tenant.parse(k.removeprefix("sc:t:")) for k in keys if not k.endswith(":rev"))

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
                    directory.memberships[(employee, location)] = _membership(orjson.loads(raw_value))
                elif kind == "cm":
                    directory.chain_memberships[rest] = _membership(orjson.loads(raw_value))
                elif kind == "role":
                    scope, _, name = rest.partition(":")
                    directory.custom_roles[(scope, name)] = _custom_role(name, scope, orjson.loads(raw_value))
            if directory.tenant.is_chain:
                chain_id = directory.tenant.id
                directory.chain = self.chain(chain_id, reader) or Chain(chain_id)
            location_ids.sort()
            if location_ids:
                for location, raw in zip(location_ids, reader.mget([loc_key(x) for x in location_ids]), strict=True):
                    if raw is not None:
                        directory.locations[location] = _location(location, orjson.loads(raw))
            members = sorted(directory.members())
            if members:
                for employee, raw in zip(members, reader.mget([emp_key(e) for e in members]), strict=True):
                    if raw is not None:
                        directory.employees[employee] = _employee(employee, orjson.loads(raw))
        return directory

    # -- writes -----------------------------------------------------------------------------
    def put_employee(self, employee: Employee, guard: Guard | None = None,
                     unplaced: tuple[str, UnplacedGuard] | None = None) -> WriteResult:
        """Create or change an employee. ``guard`` checks the write in each tenant the employee
        belongs to; ``unplaced`` (actor, check) when they belong to none, in the actor's tenants."""
        def prepare(pipe: Any) -> _Write:
            before = self._get(pipe, emp_key(employee.id))
            tenants = sorted(m.decode() for m in pipe.smembers(tenants_key(employee.id)))
            if guard:
                for tenant in tenants:
                    current = self.load_tenant(tenant, pipe)
                    changed = current.copy()
                    changed.employees[employee.id] = employee
                    guard(current, changed)
            if unplaced and not tenants:
                actor, check = unplaced
                pipe.watch(tenants_key(actor))
                theirs = sorted(m.decode() for m in pipe.smembers(tenants_key(actor)))
                check(before, [self.load_tenant(tenant, pipe) for tenant in theirs])
            write = _Write(before, employee_record(employee))
            write.set(emp_key(employee.id), employee_record(employee))
            write.touch(*tenants)
            return write

        return self._run([emp_key(employee.id), tenants_key(employee.id)], prepare, "employee", employee.id,
                         employee.id)

    def put_chain(self, chain: Chain, guard: Guard | None = None) -> WriteResult:
        tenant = Tenant.chain(chain.id)

        def prepare(pipe: Any) -> _Write:
            before = self._get(pipe, chain_key(chain.id))
            if guard or chain.owner is not None:
                current = self.load_tenant(tenant, pipe)
                check_designated_owner(current, chain.owner)
                if guard:
                    changed = current.copy()
                    changed.chain = chain
                    guard(current, changed)
            write = _Write(before, chain_record(chain))
            write.set(chain_key(chain.id), chain_record(chain))
            write.touch(tenant)
            return write

        return self._run([chain_key(chain.id), rev_key(tenant)], prepare, "chain", chain.id)

    def put_location(self, location: Location, guard: Guard | None = None) -> WriteResult:
        """Create or change a location. Moving it to another chain moves its memberships."""
        new_tenant = location.tenant

        def prepare(pipe: Any) -> _Write:
            before = self._get(pipe, loc_key(location.id))
            old = _location(location.id, before) if before else None
            if old is not None:
                pipe.watch(rev_key(old.tenant))  # a membership written there meanwhile must move too
            if guard or location.owner is not None:
                current = self.load_tenant(old.tenant if old else new_tenant, pipe)
                located = self._located(pipe, current, location, old)
                check_designated_owner(located, location.owner, location.id)
                if guard:
                    guard(current, located)
            write = _Write(before, location_record(location))
            write.set(loc_key(location.id), location_record(location))
            if location.chain and self._get(pipe, chain_key(location.chain)) is None:
                write.set(chain_key(location.chain), chain_record(Chain(location.chain)))
            write.hset(tenant_key(new_tenant), location_field(location.id), "1")
            if old is not None and old.tenant != new_tenant:
                self._move_location(pipe, write, location.id, old.tenant, new_tenant)
            write.touch(new_tenant, *([old.tenant] if old else []))
            return write

        watch = [loc_key(location.id), rev_key(new_tenant)]
        if location.chain:
            watch.append(chain_key(location.chain))
        return self._run(watch, prepare, "location", location.id)

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
        write.hdel(tenant_key(old), location_field(location))
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
            write.sadd(tenants_key(employee), new)
            if employee not in staying:
                write.srem(tenants_key(employee), old)

    def put_membership(self, location: str, employee: str, membership: Membership | None,
                       guard: Guard | None = None) -> WriteResult:
        """Set (or with None, remove) an employee's membership at one location."""

        def locate(pipe: Any) -> Tenant:
            loc = self.location(location, pipe)
            if loc is None:
                raise NotFound(f"location {location} does not exist", location=location)
            pipe.watch(rev_key(loc.tenant))  # read under WATCH: a concurrent move or write retries us
            return loc.tenant

        return self._put_membership(locate, location, employee, membership, guard,
                                    watch=[loc_key(location), emp_key(employee)], kind="membership",
                                    subject=f"{location}/{employee}",
                                    absent=f"employee {employee} has no membership at {location}")

    def put_chain_membership(self, chain: str, employee: str, membership: Membership | None,
                             guard: Guard | None = None) -> WriteResult:
        """Set (or with None, remove) an employee's chain-wide membership."""
        tenant = Tenant.chain(chain)

        def locate(pipe: Any) -> Tenant:
            if self._get(pipe, chain_key(chain)) is None:
                raise NotFound(f"chain {chain} does not exist", chain=chain)
            return tenant

        return self._put_membership(locate, CHAIN_SCOPE, employee, membership, guard,
                                    watch=[chain_key(chain), emp_key(employee), rev_key(tenant)],
                                    kind="chain_membership", subject=f"{chain}/{employee}",
                                    absent=f"employee {employee} has no chain-wide membership in {chain}")

    def _put_membership(self, locate: Callable[[Any], Tenant], scope: str, employee: str,
                        membership: Membership | None, guard: Guard | None, *, watch: list[str], kind: str,
                        subject: str, absent: str) -> WriteResult:
        """One membership write in ``scope`` (a location, or ``CHAIN_SCOPE``) of the tenant ``locate`` finds."""

        def prepare(pipe: Any) -> _Write:
            tenant = locate(pipe)
            person = self._person(pipe, employee, required=membership is not None)
            current = self.load_tenant(tenant, pipe)
            directory = current.copy()
            if person is not None:
                directory.employees[employee] = person
            before = directory.membership(employee, scope)
            if membership is None and before is None:
                raise NotFound(absent)
            write = _Write(membership_record(before, scope) if before else None,
                           membership_record(membership, scope) if membership else None)
            field = membership_field(scope, employee)
            directory.set_membership(employee, scope, membership)
            if membership is None:
                write.hdel(tenant_key(tenant), field)
                if employee not in directory.members():
                    write.srem(tenants_key(employee), tenant)
            else:
                validate_membership(directory, membership, scope, self._bundle())
                write.hset(tenant_key(tenant), field, membership_record(membership, scope))
                write.sadd(tenants_key(employee), tenant)
            if guard:
                guard(current, directory)
            write.touch(tenant)
            return write

        return self._run(watch, prepare, kind, subject, employee)

    def put_custom_role(self, tenant: str, scope: str, role: CustomRole, guard: Guard | None = None) -> WriteResult:
        def prepare(pipe: Any) -> _Write:
            current = self.load_tenant(tenant, pipe)
            directory = current.copy()
            before = directory.custom_roles.get((scope, role.name))
            directory.custom_roles[(scope, role.name)] = role
            validate_custom_role(directory, role, self._bundle())
            if guard:
                guard(current, directory)
            write = _Write(before.to_json() if before else None, role.to_json())
            write.hset(tenant_key(tenant), role_field(scope, role.name), role_record(role))
            write.touch(tenant)
            return write

        return self._run([rev_key(tenant)], prepare, "role", f"{tenant}/{scope}/{role.name}")

    def put_migrated(self, tenant: str, people: list[PlannedEmployee]) -> MigratedTenant:
        """Set the planned employees and memberships of one tenant in one atomic write.

        Validated as the API validates memberships (``policy.rules``); only what differs from the
        stored directory is written (so a re-run writes nothing and answers ``revision`` None).
        Memberships the plan does not name are left as they are.
        """
        ids = sorted({p.employee.id for p in people})
        changes: list[MigratedChange] = []

        def prepare(pipe: Any) -> _Write:
            changes.clear()  # a retry after a concurrent write starts over
            current = self.load_tenant(tenant, pipe)
            desired = apply_plan(current, people)
            stored = dict(zip(ids, pipe.mget([emp_key(e) for e in ids]), strict=True)) if ids else {}
            write = _Write()
            for person in people:
                e = person.employee
                after_person = employee_record(e)
                before_person = _loads(stored.get(e.id))
                if before_person != after_person:
                    write.set(emp_key(e.id), after_person)
                    changes.append(MigratedChange("employee", {"employee": e.id}, before_person, after_person))
                for m in person.memberships:
                    scope = scope_of(m)
                    validate_membership(desired, m.membership, scope, self._bundle())
                    if m.chain_wide:
                        old = current.chain_memberships.get(e.id)
                        subject = {"chain": m.where, "employee": e.id}
                    else:
                        old = current.memberships.get((e.id, m.where))
                        subject = {"location": m.where, "employee": e.id}
                    if old != m.membership:
                        after = membership_record(m.membership, scope)
                        write.hset(tenant_key(tenant), membership_field(scope, e.id), after)
                        write.sadd(tenants_key(e.id), tenant)
                        changes.append(MigratedChange("chain_membership" if m.chain_wide else "membership", subject,
                                                      membership_record(old, scope) if old else None, after))
            if not write.ops:
                raise _Unchanged
            write.touch(tenant)
            return write

        try:
            result = self._run([rev_key(tenant), *(emp_key(e) for e in ids)], prepare, "migration", tenant)
        except _Unchanged:
            return MigratedTenant(tenant, None, [])
        return MigratedTenant(tenant, result.revision, list(changes))

    # -- deletes ----------------------------------------------------------------------------
    def delete_employee(self, employee: str, guard: Guard | None = None) -> WriteResult:
        """Remove an employee and every membership they hold; the audit trail keeps their events."""

        def prepare(pipe: Any) -> _Write:
            before = self._get(pipe, emp_key(employee))
            if before is None:
                raise NotFound(f"employee {employee} does not exist", employee=employee)
            tenants = sorted(Tenant.parse(m.decode()) for m in pipe.smembers(tenants_key(employee)))
            if tenants:
                pipe.watch(*(rev_key(t) for t in tenants))
            removed: dict[str, Any] = {}
            write = _Write({**before, "memberships": removed}, None)
            for tenant in tenants:
                current = self.load_tenant(tenant, pipe)
                after = current.copy()
                for employee_, location in list(after.memberships):
                    if employee_ == employee:
                        removed[location] = after.memberships.pop((employee, location)).to_json()
                        write.hdel(tenant_key(tenant), f"m:{location}:{employee}")
                if after.chain_memberships.pop(employee, None) is not None:
                    removed[f"chain:{tenant.id}"] = True
                    write.hdel(tenant_key(tenant), f"cm:{employee}")
                after.employees.pop(employee, None)
                if guard:
                    guard(current, after)
            write.delete(emp_key(employee))
            write.delete(tenants_key(employee))
            write.touch(*tenants)
            return write

        return self._run([emp_key(employee), tenants_key(employee)], prepare, "employee", employee, employee)

    def delete_location(self, location: str, *, cascade: bool, guard: Guard | None = None) -> WriteResult:
        """Remove a location: 409 while employees hold a membership there, unless ``cascade``
        (which removes those memberships and the location's custom roles too)."""

        def prepare(pipe: Any) -> _Write:
            before = self._get(pipe, loc_key(location))
            if before is None:
                raise NotFound(f"location {location} does not exist", location=location)
            tenant = Location(location, before.get("chain"), before.get("owner")).tenant
            pipe.watch(rev_key(tenant))
            current = self.load_tenant(tenant, pipe)
            after = current.copy()
            members = sorted(e for e, where in current.memberships if where == location)
            if members and not cascade:
                raise Conflict(f"location {location} has {len(members)} members; remove them or use ?cascade=1",
                               members=members[:20])
            write = _Write({**before, "members": members}, None)
            for employee in members:
                after.memberships.pop((employee, location))
                write.hdel(tenant_key(tenant), f"m:{location}:{employee}")
            for scope, name in [key for key in current.custom_roles if key[0] == location]:
                after.custom_roles.pop((scope, name))
                write.hdel(tenant_key(tenant), f"role:{location}:{name}")
            after.locations.pop(location, None)
            for employee in members:
                if employee not in after.members():
                    write.srem(tenants_key(employee), tenant)
            if guard:
                guard(current, after)
            write.hdel(tenant_key(tenant), f"loc:{location}")
            write.delete(loc_key(location))
            if tenant.kind == "location":
                write.delete(tenant_key(tenant))
            write.touch(tenant)
            return write

        return self._run([loc_key(location)], prepare, "location", location)

    def delete_custom_role(self, tenant: Tenant, scope: str, role: str, guard: Guard | None = None) -> WriteResult:
        """Remove a custom role: 409 while a membership or another custom role uses it."""
        bundle = self._bundle()

        def prepare(pipe: Any) -> _Write:
            current = self.load_tenant(tenant, pipe)
            found = current.custom_roles.get((scope, role))
            if found is None:
                raise NotFound(f"no custom role {role} here", role=role)
            check_role_unused(current, (scope, role), bundle)
            after = current.copy()
            after.custom_roles.pop((scope, role))
            if guard:
                guard(current, after)
            write = _Write(found.to_json(), None)
            write.hdel(tenant_key(tenant), role_field(scope, role))
            write.touch(tenant)
            return write

        return self._run([rev_key(tenant)], prepare, "role", f"{tenant}/{scope}/{role}")
