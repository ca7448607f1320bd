"""The durable audit log in Redis: append-only, hash-chained, one log per chain or standalone location.

Layout (``T`` is a log: the tenant id ``c:<chain>`` or ``l:<standalone location>``)::

    sc:audit:<T>              STREAM, one entry per event: e = canonical JSON, p = prev_hash, h = hash
    sc:audit:<T>:meta         HASH  head (last hash), count (ever appended), floor (hash before the
                              oldest retained entry), trimmed (entries removed by retention),
                              archived (entries moved to the PostgreSQL archive), archived_to (the
                              stream id of the last one moved)
    sc:audit:<T>:ids:<YYYYMMDD>  SET of event ids by the day of the event's time (idempotency;
                              expires after the retention period)
    sc:audit:logs             SET of every log that has events

``hash = SHA1(prev_hash + "\\n" + e)`` where ``e`` is the event without ``prev_hash`` and
``hash`` as compact JSON with sorted keys; the first event's ``prev_hash`` is forty zeros.
The append is one Lua script (one round trip): it skips an id it has seen, reads the head,
hashes with ``redis.sha1hex``, XADDs and moves the head, so appends from any number of workers
and replicas serialise inside Redis and never fork the chain. A second script appends a run of
one log's events the same way in one ``EVALSHA`` (:meth:`AuditLog.append_many`, what the
shipper of :mod:`sidecar.audit` uses for its batches). Redis Lua has no SHA-256, which
is why the link is SHA-1 (see docs/audit.md). Redis errors surface as ``StoreUnavailable``.

Imports: redis, orjson, ``sidecar.store.connection.translated_errors`` and ``sidecar.store.replication``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from sidecar.store.connection import translated_errors
from sidecar.store.replication import acknowledged

GENESIS = "0" * 40
LOGS_KEY = "sc:audit:logs"
PAGE = 500

# A run of events of one log in one step, each appended as one step (remember the id, skip it if
# seen before, link to the head, XADD, count), the head read once and moved once; each id set
# touched gets its expiry once per run (the events of a batch share a day's set). KEYS: stream,
# meta, the set of logs, then the id set of each event; ARGV: ttl, log, genesis, then id and body
# per event. Returns each event's hash, or nil for an id seen before.
_APPEND_RUN = """
local prev = redis.call('HGET', KEYS[2], 'head')
if not prev then prev = ARGV[3] end
local out = {}
local added = 0
local touched, expiring = {}, {}
for i = 1, (#ARGV - 3) / 2 do
  local id, body, ids = ARGV[2 + 2 * i], ARGV[3 + 2 * i], KEYS[3 + i]
  if redis.call('SADD', ids, id) == 0 then  -- seen before (one command: add and test)
    out[i] = false
  else
    local h = redis.sha1hex(prev .. '\\n' .. body)
    redis.call('XADD', KEYS[1], '*', 'e', body, 'p', prev, 'h', h)
    if not touched[ids] then
      touched[ids] = true
      expiring[#expiring + 1] = ids
    end
    prev = h
    added = added + 1
    out[i] = h
  end
end
for _, ids in ipairs(expiring) do redis.call('EXPIRE', ids, ARGV[1]) end
if added > 0 then
  redis.call('HSET', KEYS[2], 'head', prev)
  redis.call('HINCRBY', KEYS[2], 'count', added)
  redis.call('SADD', KEYS[3], ARGV[2])
end
return out
"""

# Release entries the archive has committed: every entry up to and including ARGV[1] (the last of
# the batch, whose hash must be ARGV[2]), only while the lease KEYS[3] holds token ARGV[3]. The
# floor becomes that hash, so the hot log starts where the archive ends. Returns the count, -1 when
# the lease is lost, -2 when the stream does not hold that entry (released before).
_RELEASE = """
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return -1 end
local old = redis.call('XRANGE', KEYS[1], '-', ARGV[1])
if #old == 0 then return -2 end
local last = old[#old]
if last[1] ~= ARGV[1] then return -2 end
local fields = last[2]
local h = nil
for i = 1, #fields, 2 do
  if fields[i] == 'h' then h = fields[i + 1] end
end
if h ~= ARGV[2] then return -2 end
local ids = {}
for i, entry in ipairs(old) do
  ids[#ids + 1] = entry[1]
  if #ids == 500 or i == #old then
    redis.call('XDEL', KEYS[1], unpack(ids))
    ids = {}
  end
end
redis.call('HSET', KEYS[2], 'floor', ARGV[2], 'archived_to', ARGV[1])
redis.call('HINCRBY', KEYS[2], 'archived', #old)
return #old
"""

# Remove entries older than ARGV[1] (a stream id), at most ARGV[2], remembering the last removed
# hash as the floor the verifier starts from: retention is not mistaken for a deletion.
_TRIM = """
local old = redis.call('XRANGE', KEYS[1], '-', ARGV[1], 'COUNT', ARGV[2])
if #old == 0 then return 0 end
local last = old[#old]
local fields = last[2]
for i = 1, #fields, 2 do
  if fields[i] == 'h' then redis.call('HSET', KEYS[2], 'floor', fields[i + 1]) end
end
for _, entry in ipairs(old) do redis.call('XDEL', KEYS[1], entry[1]) end
redis.call('HINCRBY', KEYS[2], 'trimmed', #old)
return #old
"""


def stream_key(log: str) -> str:
    return f"sc:audit:{log}"


def meta_key(log: str) -> str:
    return f"sc:audit:{log}:meta"


def ids_key(log: str, day: str) -> str:
    return f"sc:audit:{log}:ids:{day}"


def canonical(event: dict[str, Any]) -> bytes:
    """The hashed form: every field but ``prev_hash`` and ``hash``, sorted keys, compact JSON."""
    if "prev_hash" in event or "hash" in event:
        event = {k: v for k, v in event.items() if k not in ("prev_hash", "hash")}
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def link(prev_hash: str, body: bytes) -> str:
    return hashlib.sha1(prev_hash.encode() + b"\n" + body, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Appended:
    hash: str | None  # None: the id was appended before (a replay), nothing changed

    @property
    def added(self) -> bool:
        return self.hash is not None


@dataclass(frozen=True)
class Verdict:
    intact: bool
    count: int
    problem: str | None = None
    event_id: str | None = None
    stream_id: str | None = None


def _entry(stream_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(fields[b"e"])
    event["prev_hash"] = fields[b"p"].decode()
    event["hash"] = fields[b"h"].decode()
    event["_sid"] = stream_id.decode()
    return event


class AuditLog:
    def __init__(self, client: redis.Redis[bytes], retention_days: int, *, archived: bool = False,
                 hot_s: int = 7 * 86400, min_replicas: int = 0, wait_timeout_s: float = 1.0) -> None:
        """``archived``: a PostgreSQL archive takes events after ``hot_s``; then Redis never trims
        (an event leaves only once archived) and keeps event ids for duplicate checks only while
        events are hot (plus two days), not for the whole retention period."""
        self.client = client
        self.retention_days = retention_days
        self.archived = archived
        self._min_replicas = min_replicas  # an append is acknowledged once this many replicas hold it
        self._wait_timeout_s = wait_timeout_s
        self._id_ttl_s = (hot_s // 86400 + 2) * 86400 if archived else (retention_days + 2) * 86400
        self._release = client.register_script(_RELEASE)
        self._append_run = client.register_script(_APPEND_RUN)
        self._trim = client.register_script(_TRIM)

    # -- writing ------------------------------------------------------------------------------
    def _run_args(self, log: str, events: list[dict[str, Any]]) -> tuple[list[str], list[Any]]:
        keys = [stream_key(log), meta_key(log), LOGS_KEY]
        args: list[Any] = [self._id_ttl_s, log, GENESIS]
        for event in events:
            keys.append(ids_key(log, event["time"][:10].replace("-", "")))
            args += (event["id"], canonical(event))
        return keys, args

    def append_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[Appended]:
        """Append events in order (idempotent by id), one ``EVALSHA`` per run of one log's events.

        Each run is atomic; several runs go in one pipelined round trip.
        """
        runs: list[tuple[str, list[dict[str, Any]]]] = []
        for log, event in items:
            if runs and runs[-1][0] == log:
                runs[-1][1].append(event)
            else:
                runs.append((log, [event]))
        if not runs:
            return []
        with translated_errors(), acknowledged(self.client, self._min_replicas, self._wait_timeout_s) as client:
            if len(runs) == 1:
                keys, args = self._run_args(*runs[0])
                replies = [self._append_run(keys=keys, args=args, client=client)]
            else:
                with client.pipeline(transaction=False) as pipe:
                    for log, events in runs:
                        keys, args = self._run_args(log, events)
                        self._append_run(keys=keys, args=args, client=pipe)
                    replies = pipe.execute()
        return [_appended(reply) for run in replies for reply in run]

    def trim(self, log: str, now_ms: int, batch: int = 1000) -> int:
        """Drop entries older than the retention period (keeps the chain verifiable).

        Never with an archive: events leave Redis only once archived, and retention drops them there.
        """
        if self.archived:
            return 0
        cutoff = now_ms - self.retention_days * 86_400_000
        removed = 0
        with translated_errors():
            while True:
                n = int(self._trim(keys=[stream_key(log), meta_key(log)], args=[f"({max(cutoff, 0)}-0", batch]))
                removed += n
                if n < batch:
                    return removed

    # -- reading ------------------------------------------------------------------------------
    def newest_first(self, log: str, *, before: str | None = None, oldest_ms: int | None = None,
                     batch: int = PAGE) -> Iterator[dict[str, Any]]:
        """Events from newest to oldest, starting just below stream id ``before`` (exclusive).

        Each event carries its stream id as ``_sid`` (the cursor). Reads ``batch`` entries per
        round trip, so an export of any size never sits in memory at once.
        """
        upper = f"({before}" if before else "+"
        lower = f"{oldest_ms}-0" if oldest_ms is not None else "-"
        key = stream_key(log)
        while True:
            with translated_errors():
                entries = self.client.xrevrange(key, max=upper, min=lower, count=batch)
            for stream_id, fields in entries:
                yield _entry(stream_id, fields)
            if len(entries) < batch:
                return
            upper = f"({entries[-1][0].decode()}"

    def oldest(self, log: str, *, below_ms: int, count: int) -> list[tuple[str, bytes, str, str]]:
        """Up to ``count`` entries older than ``below_ms``, oldest first: (stream id, body, prev_hash, hash)."""
        with translated_errors():
            entries = self.client.xrange(stream_key(log), min="-", max=f"({max(below_ms, 0)}-0", count=count)
        return [(sid.decode(), f[b"e"], f[b"p"].decode(), f[b"h"].decode()) for sid, f in entries]

    def release(self, log: str, *, last_sid: str, last_hash: str, lease_key: str, token: str) -> int:
        """Delete the entries up to ``last_sid`` once archived; see _RELEASE for the answers."""
        with translated_errors():
            return int(self._release(keys=[stream_key(log), meta_key(log), lease_key],
                                     args=[last_sid, last_hash, token]))

    def meta(self, log: str) -> dict[str, str]:
        with translated_errors():
            raw = self.client.hgetall(meta_key(log))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def logs(self) -> list[str]:
        with translated_errors():
            return sorted(m.decode() for m in self.client.smembers(LOGS_KEY))

    def verify(self, log: str, *, batch: int = 2000, start: str | None = None,
               meta: dict[str, str] | None = None) -> Verdict:
        """Walk the chain oldest first; name the first event that breaks it.

        ``start``: the hash the first entry must link to (where the archive's walk ended);
        by default the recorded floor. ``meta``: the log's meta as read by the caller.
        """
        meta = self.meta(log) if meta is None else meta
        expected = meta.get("floor", GENESIS) if start is None else start
        count = 0
        last: dict[str, Any] | None = None
        key, lower = stream_key(log), "-"
        while True:
            with translated_errors():
                entries = self.client.xrange(key, min=lower, max="+", count=batch)
            for stream_id, fields in entries:
                sid = stream_id.decode()
                body, prev, stored = fields.get(b"e"), fields.get(b"p", b"").decode(), fields.get(b"h", b"").decode()
                event_id = _event_id(body)
                if body is None:
                    return Verdict(False, count, "entry has no event body", event_id, sid)
                if prev != expected:
                    return Verdict(False, count, "prev_hash does not match the previous event's hash "
                                   "(an event before it was edited, deleted, inserted or moved)", event_id, sid)
                if link(prev, body) != stored:
                    return Verdict(False, count, "hash does not match the event's content (edited)", event_id, sid)
                expected, count, last = stored, count + 1, {"id": event_id, "sid": sid}
            if len(entries) < batch:
                break
            lower = f"({entries[-1][0].decode()}"
        head = meta.get("head")
        if head != expected and not (count == 0 and head is None):
            where = last or {}
            return Verdict(False, count, "the log's head does not match its last event "
                           "(events after it were deleted, or events appended outside the log)",
                           where.get("id"), where.get("sid"))
        total = int(meta.get("count", 0)) - int(meta.get("trimmed", 0)) - int(meta.get("archived", 0))
        if total != count:
            return Verdict(False, count, f"the log recorded {total} events but holds {count}")
        return Verdict(True, count)


def _event_id(body: bytes | None) -> str | None:
    try:
        value = orjson.loads(body) if body is not None else None
    except orjson.JSONDecodeError:
        return None
    return value.get("id") if isinstance(value, dict) else None


def _appended(reply: Any) -> Appended:
    return Appended(reply.decode() if reply else None)

