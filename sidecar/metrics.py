"""Prometheus metrics, correct under several gunicorn workers.

``sidecar serve`` calls :func:`use_multiprocess` before the workers start, so each worker
writes its samples to files there and ``/metrics`` aggregates them; a test process without it
uses the ordinary in-process registry.

Imports: prometheus_client only (importable from anywhere).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import values as prometheus_values

REQUESTS = Counter("sidecar_http_requests_total", "HTTP requests answered", ["route", "status"])
LATENCY = Histogram(
    "sidecar_http_request_duration_seconds", "Time to answer an HTTP request", ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DECISIONS = Counter("sidecar_decisions_total", "Decisions made", ["allowed", "reason"])
POLICY_RELOADS = Counter("sidecar_policy_reloads_total", "Policy reloads", ["result"])
MFA_EVENTS = Counter("sidecar_mfa_events_total", "Two-step authentication events", ["action"])
AUDIT_EVENTS = Counter("sidecar_audit_events_total",
                       "Audit events by result: written (to Redis), spooled, replayed, duplicate, failed", ["result"])


_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def labelled(metric: Counter | Histogram, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once per distinct values: every answered request
    updates three labelled metrics, and ``labels`` checks and locks on each call (0.5-1 µs)."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def _unlabelled() -> tuple[Gauge, Counter, Gauge, Counter, Counter, Counter]:
    """The metrics without labels: their one sample is made with the metric."""
    return (Gauge("sidecar_tenants_loaded", "Tenants held in memory", multiprocess_mode="livesum"),
            Counter("sidecar_audit_archived_total", "Audit events moved from Redis to the PostgreSQL archive"),
            Gauge("sidecar_audit_archive_up",
                  "1 when the audit archive (PostgreSQL) answered this process's last check, else 0",
                  multiprocess_mode="min"),
            Counter("sidecar_redis_outages_total", "Redis outages seen by a worker (the circuit opened)"),
            Counter("sidecar_seat_changes_total", "Changes of paid status recorded in the seat history"),
            Counter("sidecar_embedded_redis_restarts_total",
                    "Times sidecar serve restarted its embedded Redis after it exited"))


TENANTS_LOADED, AUDIT_ARCHIVED, AUDIT_ARCHIVE_UP, REDIS_OUTAGES, SEAT_CHANGES, EMBEDDED_REDIS_RESTARTS = _unlabelled()


def use_multiprocess(directory: Path) -> None:
    """Write samples to files under ``directory``, so ``/metrics`` adds up every gunicorn worker.

    Called before the workers fork. prometheus_client picks where samples live when it is first
    imported, which the ``sidecar`` command has done already: the pick is made again here, and
    the unlabelled metrics (whose sample exists since import) are made again. Labelled samples
    are made in the workers, later.
    """
    global TENANTS_LOADED, AUDIT_ARCHIVED, AUDIT_ARCHIVE_UP, REDIS_OUTAGES, SEAT_CHANGES, EMBEDDED_REDIS_RESTARTS
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]  # untyped
    for metric in (TENANTS_LOADED, AUDIT_ARCHIVED, AUDIT_ARCHIVE_UP, REDIS_OUTAGES, SEAT_CHANGES,
                   EMBEDDED_REDIS_RESTARTS):
        REGISTRY.unregister(metric)
    (TENANTS_LOADED, AUDIT_ARCHIVED, AUDIT_ARCHIVE_UP, REDIS_OUTAGES, SEAT_CHANGES,
     EMBEDDED_REDIS_RESTARTS) = _unlabelled()


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client is untyped here
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
