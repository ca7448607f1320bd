"""D16: a corrupt tokens file fails /readyz and keeps the last good tokens (never a 500)."""

from __future__ import annotations

import os

from sidecar.tokens import TokenFile
from tests.conftest import Api


def corrupt(path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new stamp even on a coarse clock


def test_a_truncated_tokens_file_keeps_the_last_good_tokens_and_fails_readiness(api: Api, settings) -> None:
    assert api.get("/v1/roles", scope="admin").status_code == 200
    assert api.get("/readyz").status_code == 200
    good = settings.tokens_path.read_text()
    corrupt(settings.tokens_path, '{"tokens": [')
    for path in ("/v1/roles", "/v1/roles"):  # the second request must not re-parse into a 500 either
        response = api.get(path, scope="admin")
        assert response.status_code == 200, response.get_json()
    answer = api.post("/v1/check", {"employee": "e-1", "location": "l-1", "resource": "calendar", "action": "view"},
                      scope="check")
    assert answer.status_code == 200
    ready = api.get("/readyz")
    assert ready.status_code == 503
    assert "not a valid tokens file" in ready.get_json()["tokens_error"]
    corrupt(settings.tokens_path, good)
    assert api.get("/readyz").status_code == 200


def test_a_tokens_file_of_the_wrong_shape_is_refused_like_a_truncated_one(tmp_path) -> None:
    path = tmp_path / "tokens.json"
    tokens = TokenFile(path)
    token = tokens.create("svc", ["check"])
    assert tokens.authenticate(token) is not None and tokens.check() is None
    for text in ('{"tokens": [{"name": "x"}]}', '{"tokens": 3}', "[]", '{"tokens": [{"name": 1, "sha256": 2}]}',
                 "\xff"):
        corrupt(path, text)
        assert tokens.check() is not None, text
        assert tokens.authenticate(token) is not None, text
