"""Logging: structlog configured once; JSON lines in production, readable console on a TTY.

Request context (request id, route) is bound through contextvars at request start, so every
line a request writes carries it.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

_configured = False


class _Stdout:
    """Whatever ``sys.stdout`` is at write time (gunicorn and pytest both swap it)."""

    def write(self, text: str) -> None:
        sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _dumps(value: object, default: object = None) -> str:
    return orjson.dumps(value, default=default).decode()  # type: ignore[arg-type]  # structlog passes a callable


def configure(log_format: str = "auto") -> None:
    """Set up structlog for the process (idempotent: gunicorn workers and tests call it again)."""
    global _configured
    if _configured:
        return
    console = log_format == "console" or (log_format == "auto" and sys.stdout.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if console:
        processors.append(structlog.dev.ConsoleRenderer())
    else:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=_dumps)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=_Stdout()),  # type: ignore[arg-type]  # a duck-typed file
        cache_logger_on_first_use=True,
    )
    _configured = True
