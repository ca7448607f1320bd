"""Forward-auth routes: loading policies/routes.yaml, matching, precedence (policy.routes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sidecar.forward_auth.paths import normalize_path
from sidecar.policy.files import PolicyFileError
from sidecar.policy.routes import RouteTable, load_routes

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"


def catalogue_rights() -> set[str]:
    data = yaml.safe_load((POLICY_DIR / "catalogue.yaml").read_text())
    return set(data["rights"])


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return load_routes(POLICY_DIR / "routes.yaml", catalogue_rights())


def write_routes(tmp_path: Path, body: str) -> Path:
    file = tmp_path / "routes.yaml"
    file.write_text(body)
    return file


RIGHTS = {"calendar:view", "client:view", "client:export", "client:delete", "report:view", "a:b", "a:c"}


@pytest.mark.parametrize(
    ("method", "target", "right", "location"),
    [
        ("GET", "/locations/l-1/calendar", "calendar:view", "l-1"),
        ("POST", "/locations/l-2/appointments", "appointment:create", "l-2"),
        ("PUT", "/locations/l-1/appointments/a-7", "appointment:edit", "l-1"),
        ("DELETE", "/locations/l-1/appointments/a-7", "appointment:delete", "l-1"),
        ("GET", "/locations/l-1/clients", "client:view", "l-1"),
        ("GET", "/locations/l-1/clients/export", "client:export", "l-1"),
        ("DELETE", "/locations/l-1/clients/export", "client:delete", "l-1"),
        ("DELETE", "/locations/l-1/clients/c-9", "client:delete", "l-1"),
        ("POST", "/locations/l-1/payments/p-3/refund", "payment:refund", "l-1"),
        ("GET", "/reports", "report:view", None),
        ("GET", "/locations/l-1/reports/export", "report:export", "l-1"),
        ("HEAD", "/locations/l-1/clients/export", "client:export", "l-1"),
        ("GET", "/locations/l-1/../l-2/clients/export", "client:export", "l-2"),
        ("GET", "//locations//l-1//clients/", "client:view", "l-1"),
        ("GET", "/locations/l-1/clients/x/%2e%2e/export?csv=1", "client:export", "l-1"),
    ],
    ids=[
        "calendar",
        "create_appointment",
        "edit_appointment_wildcard",
        "delete_appointment_wildcard",
        "clients",
        "literal_export_beats_nothing",
        "delete_wildcard_matches_literal_text",
        "delete_client",
        "wildcard_in_the_middle",
        "route_without_location",
        "report_export",
        "head_uses_get_route",
        "dot_dot_resolved_before_matching",
        "slashes_collapsed_before_matching",
        "encoded_dots_resolved_before_matching",
    ],
)
def test_shipped_routes_match(table: RouteTable, method: str, target: str, right: str, location: str | None) -> None:
    found = table.match(method, normalize_path(target))
    assert found is not None
    assert (found.right, found.location) == (right, location)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/locations/l-1"),
        ("GET", "/locations/l-1/clients/export/more"),
        ("POST", "/locations/l-1/calendar"),
        ("PATCH", "/locations/l-1/settings"),
        ("get", "/locations/l-1/calendar"),
        ("GET", "/Locations/l-1/calendar"),
        ("GET", "/locations/l-1/CLIENTS/export"),
        ("DELETE", "/locations/l-1/clients"),
        ("GET", "/"),
        ("OPTIONS", "/locations/l-1/calendar"),
    ],
    ids=[
        "too_short",
        "too_long",
        "wrong_method",
        "method_without_routes",
        "lower_case_method",
        "case_differs_in_literal",
        "case_differs_in_later_literal",
        "delete_without_id",
        "root",
        "options",
    ],
)
def test_no_route_matches(table: RouteTable, method: str, target: str) -> None:
    assert table.match(method, normalize_path(target)) is None


def test_literal_beats_wildcard_whatever_the_file_order(tmp_path: Path) -> None:
    for order in ((0, 1), (1, 0)):
        lines = [
            '  - {method: GET, path: "/locations/{location}/clients/{*}", right: "client:view"}',
            '  - {method: GET, path: "/locations/{location}/clients/export", right: "client:export"}',
        ]
        file = write_routes(tmp_path, "routes:\n" + "\n".join(lines[i] for i in order) + "\n")
        table = load_routes(file, RIGHTS)
        export = table.match("GET", "/locations/l-1/clients/export")
        other = table.match("GET", "/locations/l-1/clients/c-1")
        assert export is not None and export.right == "client:export"
        assert other is not None and other.right == "client:view"


def test_leftmost_literal_wins_between_crossing_wildcards(tmp_path: Path) -> None:
    file = write_routes(
        tmp_path,
        "routes:\n"
        '  - {method: GET, path: "/x/{*}/c", right: "a:b"}\n'
        '  - {method: GET, path: "/x/b/{*}", right: "a:c"}\n',
    )
    table = load_routes(file, RIGHTS)
    found = [table.match("GET", path) for path in ("/x/b/c", "/x/z/c", "/x/b/z")]
    assert [match.right if match else None for match in found] == ["a:c", "a:b", "a:c"]


def test_literal_branch_that_dead_ends_falls_back_to_wildcard(tmp_path: Path) -> None:
    file = write_routes(
        tmp_path,
        "routes:\n"
        '  - {method: GET, path: "/x/b/only", right: "a:b"}\n'
        '  - {method: GET, path: "/x/{*}/other", right: "a:c"}\n',
    )
    found = load_routes(file, RIGHTS).match("GET", "/x/b/other")
    assert found is not None and found.right == "a:c"


def test_explicit_head_route_beats_get_route(tmp_path: Path) -> None:
    file = write_routes(
        tmp_path,
        'routes:\n  - {method: GET, path: "/x", right: "a:b"}\n  - {method: HEAD, path: "/x", right: "a:c"}\n',
    )
    found = load_routes(file, RIGHTS).match("HEAD", "/x")
    assert found is not None and found.right == "a:c"


def test_location_capture_is_the_location_segment(tmp_path: Path) -> None:
    file = write_routes(tmp_path, 'routes:\n  - {method: GET, path: "/{*}/at/{location}/x", right: "a:b"}\n')
    found = load_routes(file, RIGHTS).match("GET", "/anything/at/l-9/x")
    assert found is not None and found.location == "l-9"


def test_root_route(tmp_path: Path) -> None:
    file = write_routes(tmp_path, 'routes:\n  - {method: GET, path: "/", right: "a:b"}\n')
    found = load_routes(file, RIGHTS).match("GET", "/")
    assert found is not None and (found.right, found.location) == ("a:b", None)


def test_empty_routes_list_denies_everything(tmp_path: Path) -> None:
    assert load_routes(write_routes(tmp_path, "routes: []\n"), RIGHTS).match("GET", "/x") is None


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        (
            'routes:\n  - {method: GET, path: "/a", right: "a:b"}\n  - {method: GET, path: "/b", right: "nope:x"}\n',
            3,
            "unknown right 'nope:x'",
        ),
        ('routes:\n  - {method: get, path: "/a", right: "a:b"}\n', 2, "method 'get' must be one of"),
        ('routes:\n  - {method: TRACE, path: "/a", right: "a:b"}\n', 2, "method 'TRACE'"),
        ('routes:\n  - {method: GET, path: "a", right: "a:b"}\n', 2, "starting with /"),
        ('routes:\n  - {method: GET, path: "/a/{id}", right: "a:b"}\n', 2, "placeholders are whole segments"),
        ('routes:\n  - {method: GET, path: "/a/x{*}", right: "a:b"}\n', 2, "placeholders are whole segments"),
        (
            'routes:\n  - {method: GET, path: "/{location}/{location}", right: "a:b"}\n',
            2,
            "{location} more than once",
        ),
        ('routes:\n  - {method: GET, path: "/a//b", right: "a:b"}\n', 2, "must be non-empty"),
        ('routes:\n  - {method: GET, path: "/a/", right: "a:b"}\n', 2, "must be non-empty"),
        ('routes:\n  - {method: GET, path: "/a/../b", right: "a:b"}\n', 2, "not . or .."),
        ('routes:\n  - {method: GET, path: "/a%2Fb", right: "a:b"}\n', 2, "no %"),
        ('routes:\n  - {method: GET, path: "/a?x=1", right: "a:b"}\n', 2, "no %, ?"),
        ('routes:\n  - {method: GET, path: "/a", rigth: "a:b"}\n', 2, "exactly method, path, right"),
        ('routes:\n  - {method: GET, path: "/a", right: "a:b", extra: 1}\n', 2, "exactly method, path, right"),
        ("routes:\n  - just a string\n", 2, "exactly method, path, right"),
        (
            'routes:\n  - {method: GET, path: "/a/{*}", right: "a:b"}\n'
            '  - {method: GET, path: "/a/{location}", right: "a:c"}\n',
            3,
            "overlaps GET /a/{*} (line 2)",
        ),
        ("rules: []\n", 1, "expected a mapping with a list `routes:`"),
        ("routes: []\nother: 1\n", 2, "unknown top-level key"),
        ("routes:\n  - {method: GET\n", 3, "invalid YAML"),
    ],
    ids=[
        "unknown_right",
        "lower_case_method",
        "method_outside_the_set",
        "relative_path",
        "unknown_placeholder",
        "placeholder_inside_segment",
        "location_twice",
        "empty_segment",
        "trailing_slash",
        "dot_dot_segment",
        "percent_in_literal",
        "query_in_path",
        "misspelt_key",
        "extra_key",
        "entry_not_a_mapping",
        "duplicate_pattern",
        "no_routes_key",
        "unknown_top_level_key",
        "invalid_yaml",
    ],
)
def test_bad_routes_file_names_file_and_line(tmp_path: Path, body: str, line: int | None, problem: str) -> None:
    file = write_routes(tmp_path, body)
    with pytest.raises(PolicyFileError) as caught:
        load_routes(file, RIGHTS)
    assert caught.value.line == line
    assert problem in caught.value.problem
    where = f"{file}:{line}: " if line else f"{file}: "
    assert str(caught.value).startswith(where)


def test_shipped_routes_file_names_only_catalogue_rights(table: RouteTable) -> None:
    assert {route.right for route in table} <= catalogue_rights()
    assert len(table) == 14

