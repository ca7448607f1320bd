"""Logging: structlog configured once; JSON lines in production, readable console on a TTY.

Request context (request id, route) is bound through contextvars at request start, so every
line a request writes carries it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import structlog

_configured = False


class _Stdout:
    """Whatever ``sys.stdout`` is at write time (gunicorn and pytest both swap it)."""

    def write(self, text: str) -> None:
        sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


_stdout = _Stdout()


class _Lines:
    """A file that keeps what is written to it as a list of lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def written_together() -> Iterator[Any]:
    """A logger configured like every other whose lines reach stdout together as the block ends.

    For a batch of lines (the audit shipper's): one ``write(2)`` per ``PIPE_BUF`` bytes of whole
    lines, not one per line. No write is larger, so that lines of several workers sharing a pipe
    never interleave (a pipe keeps writes up to ``PIPE_BUF`` whole).
    """
    sink = _Lines()
    config = structlog.get_config()
    # the configured bound logger itself (structlog.wrap_logger's lazy proxy would bind per call)
    logger = config["wrapper_class"](structlog.WriteLogger(sink), processors=config["processors"],  # type: ignore[arg-type]
                                     context=config["context_class"]())
    try:
        yield logger
    finally:
        chunk: list[str] = []
        size = 0
        for line in sink.lines:
            length = len(line) if line.isascii() else len(line.encode())
            if chunk and size + length > select.PIPE_BUF:
                _stdout.write("".join(chunk))
                _stdout.flush()
                chunk, size = [], 0
            chunk.append(line)
            size += length
        if chunk:
            _stdout.write("".join(chunk))
            _stdout.flush()


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
        logger_factory=structlog.WriteLoggerFactory(file=_stdout),  # type: ignore[arg-type]  # a duck-typed file
        cache_logger_on_first_use=True,
    )
    _configured = True
