"""Seat history in Redis: every change of an employee's paid status, per scope and globally.

Layout (``S`` is a scope key, ``chain:<C>`` or ``location:<L>``)::

    sidecar:seat-state:S        JSON {"revision", "paid": [employee, ...]}: the last recorded seats
    sidecar:seat-changes:S      STREAM, one entry per change; the id is the write's time (see below)
    sidecar:seat-changes        STREAM, every scope's changes, for the billing service to consume

``record`` hands a freshly computed :class:`Seats` to one Lua script per scope. The recorded
state holds the revision, the paid set, the policy version and the rule it was counted under;
the script compares them with the count's, all atomically (issue 14: every seat change is
recorded whatever caused it, and names its **cause**):

* an older revision or an older policy version, or a rule other than the one claimed in
  ``sidecar:billing-rule`` (a replica not yet restarted), is ignored;
* another rule than the state's: cause ``rule_change``; else a newer policy version:
  ``policy_reload``; else a newer revision: ``import`` if the change-log entry of that revision
  is a bulk import, else ``write``; else nothing new (another replica recorded it);
* the paid set is diffed against the recorded one, each difference appended to both streams,
  and the state replaced.

So every replica may record every write and each change is recorded exactly once, and a change
missed by a crash is recorded by the next computation (at a newer revision or policy).

Per-scope entry ids of writes and imports are ``<revision ms>-<revision seq * 10^6 + i>``: the
time of the write that caused the change (or Redis's next id if an entry recorded since is
later); a policy reload or rule change is stamped with the time it is recorded (``*``), so
``XRANGE`` by time answers a period directly. A per-scope entry has one field, ``c`` =
``"<employee> <1|0> <paid_seats> <revision> <cause>"`` (ids hold no spaces; entries written
before causes existed have no cause and read as ``write``): a month of 10,000 changes is read back in a
third of the time separate fields take with redis-py's pure-Python parser. The global stream's
entries carry named fields for consumers: ``scope``, ``employee``, ``paid`` (1|0),
``paid_seats`` (the scope's paid seats after that revision), ``revision``, ``cause``, ``time`` (ms).
Redis errors become ``StoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from sidecar.policy.seats import Scope, Seats
from sidecar.policy.times import rfc3339
from sidecar.store.connection import translated_errors

SEAT_CHANGES_STREAM = "sidecar:seat-changes"
BILLING_RULE_KEY = "sidecar:billing-rule"  # the rule seats are recorded under (the last replica started)
CHANGES_STREAM = "sidecar:changes"  # the directory's change log: which revisions are imports
CAUSES = ("write", "import", "policy_reload", "rule_change")
SEAT_CHANGES_MAXLEN = 1_000_000  # the global feed; per-scope streams keep everything (invoices)
_SEQ_STRIDE = 1_000_000

_RECORD = """
local rev_ms, rev_seq = tonumber(ARGV[1]), tonumber(ARGV[2])
local policy, rule = tonumber(ARGV[7]), ARGV[8]
local claimed = redis.call('GET', KEYS[5])
if claimed and claimed ~= rule then return 0 end
local state = redis.call('GET', KEYS[1])
local old = {}
local cause
if state then
  local s = cjson.decode(state)
  local old_ms, old_seq = tonumber(s.ms), tonumber(s.seq)
  local old_policy = tonumber(s.policy or 0)
  if rev_ms < old_ms or (rev_ms == old_ms and rev_seq < old_seq) then return 0 end
  if policy < old_policy then return 0 end
  if s.rule and s.rule ~= rule then cause = 'rule_change'
  elseif policy > old_policy then cause = 'policy_reload'
  elseif rev_ms > old_ms or rev_seq > old_seq then cause = 'write'
  else return 0 end
  for _, e in ipairs(s.paid) do old[e] = true end
else
  cause = 'write'
end
if cause == 'write' then
  local entry = redis.call('XRANGE', KEYS[4], ARGV[1] .. '-' .. ARGV[2], ARGV[1] .. '-' .. ARGV[2])
  if #entry > 0 then
    local f = entry[1][2]
    for i = 1, #f, 2 do if f[i] == 'kind' and f[i + 1] == 'import' then cause = 'import' end end
  end
end
local paid = cjson.decode(ARGV[3])
local now = {}
for _, e in ipairs(paid) do now[e] = true end
local changes = {}
for _, e in ipairs(paid) do if not old[e] then table.insert(changes, {e, '1'}) end end
local gone = {}
for e, _ in pairs(old) do if not now[e] then table.insert(gone, e) end end
table.sort(gone)
for _, e in ipairs(gone) do table.insert(changes, {e, '0'}) end
local count = tostring(#paid)
local revision = ARGV[1] .. '-' .. ARGV[2]
local last_ms, last_seq = -1, -1
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then
  local dash = string.find(last[1][1], '-', 1, true)
  last_ms, last_seq = tonumber(string.sub(last[1][1], 1, dash - 1)), tonumber(string.sub(last[1][1], dash + 1))
end
for i, c in ipairs(changes) do
  local id = '*'
  if cause == 'write' or cause == 'import' then
    local seq = rev_seq * tonumber(ARGV[6]) + i - 1
    if rev_ms > last_ms or (rev_ms == last_ms and seq > last_seq) then
      id = ARGV[1] .. '-' .. string.format('%.0f', seq)
    end
  end
  id = redis.call('XADD', KEYS[2], id, 'c', c[1] .. ' ' .. c[2] .. ' ' .. count .. ' ' .. revision .. ' ' .. cause)
  local dash = string.find(id, '-', 1, true)
  last_ms, last_seq = tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'scope', ARGV[4], 'employee', c[1], 'paid', c[2],
             'paid_seats', count, 'revision', revision, 'cause', cause, 'time', string.sub(id, 1, dash - 1))
end
redis.call('SET', KEYS[1], cjson.encode({ms = ARGV[1], seq = ARGV[2], paid = paid, policy = ARGV[7], rule = rule}))
return #changes
"""

# A period in one reply: the entry before it and the entries in it, as "id c" lines. One bulk
# string instead of 30,000 nested ones is what keeps redis-py's parser out of the way.
_PERIOD = """
local before = ''
if ARGV[1] ~= '' then
  local prev = redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', 1)
  if #prev > 0 then before = prev[1][1] .. ' ' .. prev[1][2][2] end
end
local out = {}
for i, e in ipairs(redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[3])) do out[i] = e[1] .. ' ' .. e[2][2] end
return {before, table.concat(out, '\\n')}
"""


def state_key(scope: Scope) -> str:
    return f"sidecar:seat-state:{scope.key}"


def scope_stream(scope: Scope) -> str:
    return f"{SEAT_CHANGES_STREAM}:{scope.key}"


@dataclass(frozen=True)
class PaidChange:
    time_ms: int
    employee: str
    paid: bool
    paid_seats: int
    revision: str
    cause: str = "write"

    def to_json(self) -> dict[str, Any]:
        return {"time": rfc3339(self.time_ms), "paid_seats": self.paid_seats, "employee": self.employee,
                "paid": self.paid, "revision": self.revision, "cause": self.cause}


@dataclass(frozen=True)
class History:
    """A period's changes and the paid seats in force when it began; peak covers both."""

    paid_seats_at_since: int
    changes: list[PaidChange]

    @property
    def peak_paid_seats(self) -> int:
        return max([self.paid_seats_at_since, *(c.paid_seats for c in self.changes)])

    def to_json(self) -> dict[str, Any]:
        return {"peak_paid_seats": self.peak_paid_seats, "paid_seats_at_since": self.paid_seats_at_since,
                "changes": [c.to_json() for c in self.changes]}


def _change(line: str) -> PaidChange:
    entry_id, employee, paid, paid_seats, revision, *cause = line.split(" ")
    return PaidChange(int(entry_id.split("-", 1)[0]), employee, paid == "1", int(paid_seats), revision,
                      cause[0] if cause else "write")


class SeatHistory:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.client = client
        self._record = client.register_script(_RECORD)
        self._period = client.register_script(_PERIOD)

    def record(self, counts: Iterable[Seats], policy_version: int = 0) -> int:
        """Record each scope's seats if newer than what is recorded; returns the number of changes.

        ``policy_version`` is the version of the policy bundle the seats were counted with
        (``PolicyBundle.version``); each count carries its rule.
        """
        counts = list(counts)
        if not counts:
            return 0
        with translated_errors(), self.client.pipeline(transaction=False) as pipe:
            for seats in counts:
                ms, _, seq = seats.revision.partition("-")
                self._record(keys=[state_key(seats.scope), scope_stream(seats.scope), SEAT_CHANGES_STREAM,
                                   CHANGES_STREAM, BILLING_RULE_KEY],
                             args=[ms, seq or "0", orjson.dumps(sorted(seats.paid)).decode(), seats.scope.key,
                                   SEAT_CHANGES_MAXLEN, _SEQ_STRIDE, policy_version, seats.rule], client=pipe)
            return sum(int(n) for n in pipe.execute())

    def claim_rule(self, rule: str) -> str | None:
        """Make ``rule`` the one seats are recorded under; answers the rule claimed before (None: none)."""
        with translated_errors():
            previous: bytes | None = self.client.set(BILLING_RULE_KEY, rule, get=True)  # type: ignore[assignment]
        return None if previous is None else previous.decode()

    def claim_sweep(self, name: str) -> bool:
        """True for the first replica to ask (so one replica recounts every tenant after a reload)."""
        with translated_errors():
            return bool(self.client.set(f"sidecar:seat-sweep:{name}", "1", nx=True, ex=86_400))

    def history(self, scope: Scope, since_ms: int, until_ms: int) -> History:
        """Changes with ``since_ms <= time <= until_ms``, and the paid seats in force at ``since_ms``."""
        with translated_errors():
            before, during = self._period(keys=[scope_stream(scope)],
                                          args=[f"({since_ms}-0" if since_ms > 0 else "", f"{since_ms}-0", until_ms])
        at_since = _change(before.decode()).paid_seats if before else 0
        return History(at_since, [_change(line) for line in during.decode().split("\n")] if during else [])

__all__ = ["BILLING_RULE_KEY", "CAUSES", "SEAT_CHANGES_STREAM", "History", "PaidChange", "SeatHistory", "scope_stream",
           "state_key"]
