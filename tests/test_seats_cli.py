"""``sidecar seats``: the same answer as the API, as a table for a person."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.cli import main
from tests.test_billing_api import build


def test_seats_of_a_chain_as_a_table(api: Any, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    revision = build(api)
    capsys.readouterr()  # the writes' log lines
    assert main(["seats", "--chain", "ch-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["employee", "seat"]
    assert [line.split() for line in lines[1:-1]] == [["acct", "paid"], ["admin", "paid"], ["boss", "free"],
                                                       ["cc", "paid"], ["mkt", "free"], ["stylist", "paid"]]
    assert lines[-1] == f"chain ch-1: 4 paid, 2 free (rule announced, revision {revision})"


@pytest.mark.parametrize(("argv", "row"), [
    (["--location", "l-1", "--explain"], "stylist  paid  provides_services"),
    (["--chain", "ch-1", "--explain"], "boss     free  owner_exempt"),
    (["--chain", "ch-1", "--explain", "--rule", "writes"], "mkt      paid  right:catalog:manage, right:marketing:send"),
])
def test_explain_adds_the_reasons(api: Any, cli_env: None, capsys: pytest.CaptureFixture[str],
                                  argv: list[str], row: str) -> None:
    build(api)
    capsys.readouterr()  # the writes' log lines
    assert main(["seats", *argv]) == 0
    out = capsys.readouterr().out
    assert any(" ".join(line.split()).startswith(" ".join(row.split())) for line in out.splitlines()), out


@pytest.mark.parametrize("argv", [["--chain", "nope"], ["--location", "nowhere"]])
def test_an_unknown_scope_exits_1(api: Any, cli_env: None, capsys: pytest.CaptureFixture[str],
                                  argv: list[str]) -> None:
    build(api)
    assert main(["seats", *argv]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_sidecar_seats_transition(api: Any, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    build(api)
    capsys.readouterr()
    assert main(["seats", "--chain", "ch-1", "--transition"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["employee", "legacy", "now", "reasons"]
    assert lines[1].split() == ["acct", "free", "paid", "right:payment:process"]
    assert lines[-1].startswith("chain ch-1: 1 paid under the legacy terms, 4 now (rule announced")
