"""The first token: to SIDECAR_BOOTSTRAP_TOKEN_FILE (0600, never printed) when set, else printed once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sidecar.startup import bootstrap_token
from sidecar.tokens import TokenFile
from tests.conftest import make_settings


def test_with_a_token_file_the_token_goes_there_with_mode_0600_and_nowhere_else(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "secrets" / "bootstrap-token"
    settings = make_settings(tmp_path, bootstrap_token_file=target)
    bootstrap_token(settings)
    token = target.read_text().strip()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert TokenFile(settings.tokens_path).authenticate(token) is not None
    printed = capsys.readouterr()
    assert token not in printed.out and token not in printed.err
    assert str(target) in printed.err  # says where it is
    bootstrap_token(settings)  # a restart makes no second token
    assert target.read_text().strip() == token


def test_without_a_token_file_it_is_printed_once_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)
    bootstrap_token(settings)
    first = capsys.readouterr()
    token = first.err.strip().splitlines()[-1]
    assert TokenFile(settings.tokens_path).authenticate(token) is not None and token not in first.out
    bootstrap_token(settings)
    assert capsys.readouterr().err == ""
