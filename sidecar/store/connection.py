"""Connections to Redis, created lazily so nothing is opened before gunicorn forks."""

from __future__ import annotations

import redis


def connect(url: str, *, timeout_s: float = 1.0) -> redis.Redis:
    """A client whose commands fail fast when Redis is away, so decisions never hang on it."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry_on_timeout=False,
        decode_responses=False,
    )
