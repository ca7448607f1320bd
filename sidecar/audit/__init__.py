"""The audit trail: critical events, durable and hash-chained per chain (or standalone location).

    events.py     events as values: categories, new_event, scrubbing secrets, contract device fields
    auditor.py    Auditor: the durable writer, its shipper thread, start() / stop()
    listeners.py  CheckEvents / WriteEvents: turn the runtime's checks and writes into events
    logins.py     NewDevices: login.new_device, once per (employee, device), from checks and reports
    query.py      the read side for the Security section: Query, search() (Redis, then the archive)
    archiver.py   Archiver: moves events past the hot period to PostgreSQL; reading and verifying across both

Every event goes to two sinks: one structlog JSON line (``"event": "audit"``) and the durable
log of its tenant (:mod:`sidecar.store.audit_log`). An event moves through these states:

* **recorded**: ``Auditor.emit``/``record`` (reported events, directory writes) append it to
  Redis and acknowledge it only then; when Redis does not answer it is **spooled** (fsync'd in
  this process's spool file, :mod:`sidecar.store.spool`) and acknowledged; neither: 503.
* **journaled**: a critical check's event is copied into the spool file's mapping without fsync
  (no system call: survives SIGKILL of the worker, not a host crash before write-back); the
  shipper thread is woken. The check answers then.
* **shipped**: the shipper writes the log lines of what was journaled (``stored_in="journal"``,
  a batch's lines together), then appends pending records in batches (one ``EVALSHA`` per run
  of one log) and logs ``audit_shipped`` with the log's new head hash. Appends are idempotent by id.
* **replayed**: a later process ships the spool files of dead ones (``audit_replayed``; a dead
  process's journal records get their ``audit`` line then, with ``replayed``, as it may have
  died before writing it: after a crash a line can appear twice, never not at all).

While a process has spooled events waiting, its new events queue behind them in the spool, and
an event going to Redis first ships this process's pending check events: a log stays in order.
Secrets never reach either sink.

Inside, imports point one way: events <- auditor <- listeners, logins (query stands alone). The package
imports policy, store, errors and metrics, never the runtime or the web layer: the runtime
builds the Auditor and subscribes the listeners.
"""

from sidecar.audit.auditor import Auditor

__all__ = ["Auditor"]
