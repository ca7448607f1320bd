"""Log lines: whole lines in writes a shared pipe keeps whole; a served worker's lines written
from a thread, none lost at its end; the request line as structlog itself would write it."""

from __future__ import annotations

import json
import os
import select
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from sidecar import logs, metrics
from tests.conftest import wait_until


class Writes:
    """A buffered stdout that records what each flush sends (one ``write(2)`` each)."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.pending: list[str] = []

    def write(self, text: str) -> None:
        self.pending.append(text)

    def flush(self) -> None:
        if self.pending:
            self.writes.append("".join(self.pending))
            self.pending.clear()


def test_lines_written_together_go_out_as_whole_lines_at_most_pipe_buf_bytes_at_a_time(monkeypatch) -> None:
    logs.configure("json")  # what the sidecar runs with (idempotent: the first configuration stays)
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    with logs.written_together() as lines:
        for n in range(100):
            lines.info("audit", n=n, text="é" * 100 + "x" * 200)  # non-ASCII: bytes, not characters, count
        assert out.writes == []  # nothing before the block ends
    assert 1 < len(out.writes) < 100 and not out.pending
    assert all(len(w.encode()) <= select.PIPE_BUF and w.endswith("\n") for w in out.writes)
    records = [json.loads(line) for w in out.writes for line in w.splitlines()]
    assert [(r["event"], r["n"]) for r in records] == [("audit", n) for n in range(100)]


def test_a_line_is_what_the_configured_processors_render(monkeypatch) -> None:
    logs.configure("json")
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    with logs.written_together() as lines:
        lines.info("audit", id="e-1", hash=None)
    line = json.loads(out.writes[0])
    assert (line["event"], line["id"], line["hash"], line["level"]) == ("audit", "e-1", None, "info")
    assert line["timestamp"].endswith("Z")  # the configured TimeStamper's


def test_a_line_longer_than_pipe_buf_goes_alone(monkeypatch) -> None:
    logs.configure("json")
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    with logs.written_together() as lines:
        lines.info("short", n=1)
        lines.info("long", text="x" * (2 * select.PIPE_BUF))
        lines.info("short", n=2)
    assert [json.loads(w)["event"] for w in out.writes] == ["short", "long", "short"]


@pytest.fixture
def buffered(monkeypatch: pytest.MonkeyPatch) -> Iterator[Writes]:
    """Lines buffered as in a served worker, into a recording stdout; unbuffered again after.

    Yielded before it is made stdout: pytest sets its own between a fixture and the test.
    """
    logs.configure("json")
    out = Writes()
    logs.buffer_lines()
    try:
        yield out
    finally:
        logs.unbuffer_lines()


def record_into(out: Writes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", out)


def test_a_buffered_line_is_written_by_the_thread_not_the_caller(buffered: Writes, monkeypatch) -> None:
    record_into(buffered, monkeypatch)
    writer = structlog.get_logger("test")
    writer.info("first", n=1)
    logs.info("second", n=2)
    assert buffered.writes == []  # the caller made no write
    assert wait_until(lambda: buffered.writes, 5)
    assert [json.loads(line)["event"] for w in buffered.writes for line in w.splitlines()] == ["first", "second"]


def test_buffered_lines_go_out_whole_and_at_most_pipe_buf_bytes_at_a_time(buffered: Writes, monkeypatch) -> None:
    record_into(buffered, monkeypatch)
    for n in range(200):
        logs.info("line", n=n, text="é" * 50 + "x" * 100)
    logs.unbuffer_lines()  # what a worker's end does: everything pending is written
    assert 1 < len(buffered.writes) < 200
    assert all(len(w.encode()) <= select.PIPE_BUF and w.endswith("\n") for w in buffered.writes)
    assert [json.loads(line)["n"] for w in buffered.writes for line in w.splitlines()] == list(range(200))


def test_a_full_buffer_is_written_by_the_caller_that_filled_it(buffered: Writes, monkeypatch) -> None:
    record_into(buffered, monkeypatch)
    monkeypatch.setattr(logs, "MAX_PENDING_CHARS", 1000)  # and a drain thread that never comes in time
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 3600)
    logs.unbuffer_lines()
    logs.buffer_lines()
    logs.info("small", text="x" * 100)
    assert buffered.writes == []
    logs.info("filling", text="x" * 1000)
    assert [json.loads(line)["event"] for w in buffered.writes for line in w.splitlines()] == ["small", "filling"]


def test_a_forked_child_writes_its_own_lines_not_its_parents_pending_ones(buffered: Writes, monkeypatch) -> None:
    record_into(buffered, monkeypatch)
    logs.info("parent's", n=1)
    pid = os.fork()
    if pid == 0:  # the child (a copy of this stdout): its line is written at once, alone
        logs.info("child's", n=2)
        os._exit(0 if [json.loads(w)["event"] for w in buffered.writes] == ["child's"] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logs.unbuffer_lines()
    assert [json.loads(w)["event"] for w in buffered.writes] == ["parent's"]


def test_the_request_line_is_what_structlog_would_write(monkeypatch) -> None:
    logs.configure("json")
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    structlog.contextvars.bind_contextvars(request_id="rid-1")
    try:
        structlog.get_logger("sidecar.http").info("request", route="/v1/check", status=200)
        logs.info("request", route="/v1/check", status=200)
    finally:
        structlog.contextvars.clear_contextvars()
    by_structlog, by_logs = (json.loads(w) for w in out.writes)
    assert by_structlog.pop("timestamp")[:19] == by_logs.pop("timestamp")[:19]
    assert list(by_structlog.items()) == list(by_logs.items())  # the same fields in the same order


@pytest.mark.parametrize("nanos", [1_796_226_198_403_123_456, 1_796_226_199_000_000_999, 86_400_000_001_000])
def test_a_line_carries_its_time_as_structlogs_iso_stamper_writes_it(monkeypatch, nanos: int) -> None:
    """The text structlog's ``TimeStamper(fmt="iso", utc=True)`` writes for that instant, always
    with six digits of microseconds (structlog drops them when they are all zero)."""
    logs.configure("json")
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(logs.time, "time_ns", lambda: nanos)
    logs.info("timed")
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)
    assert json.loads(out.writes[0])["timestamp"] == instant.isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_capture_logs_sees_the_request_line() -> None:
    with structlog.testing.capture_logs() as captured:
        logs.info("request", status=200)
    assert captured == [{"event": "request", "status": 200, "log_level": "info"}]


def test_a_labelled_metric_is_the_child_prometheus_gives() -> None:
    child = metrics.labelled(metrics.REQUESTS, "/test/labelled", "200")
    assert child is metrics.REQUESTS.labels("/test/labelled", "200")
    assert metrics.labelled(metrics.REQUESTS, "/test/labelled", "200") is child
