"""Log lines: a batch's lines reach stdout together, in writes a shared pipe keeps whole."""

from __future__ import annotations

import json
import select
import sys

from sidecar import logs


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
