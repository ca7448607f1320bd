"""Prometheus metrics, correct under several gunicorn workers.

``sidecar serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so each worker
writes its samples to files there and ``/metrics`` aggregates them; a test process without it
uses the ordinary in-process registry.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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
TENANTS_LOADED = Gauge("sidecar_tenants_loaded", "Tenants held in memory", multiprocess_mode="livesum")
AUDIT_ARCHIVED = Counter("sidecar_audit_archived_total", "Audit events moved from Redis to the PostgreSQL archive")
AUDIT_ARCHIVE_UP = Gauge("sidecar_audit_archive_up",
                         "1 when the audit archive (PostgreSQL) answered this process's last check, else 0",
                         multiprocess_mode="min")
REDIS_OUTAGES = Counter("sidecar_redis_outages_total", "Redis outages seen by a worker (the circuit opened)")
SEAT_CHANGES = Counter("sidecar_seat_changes_total", "Changes of paid status recorded in the seat history")


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
