"""Normalising the original request URI and finding it in the proxy's headers (forward_auth.paths)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import EnvironHeaders, Headers

from sidecar.forward_auth.paths import RequestRejected, normalize_path, original_request


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/locations/l-1/clients", "/locations/l-1/clients"),
        ("/", "/"),
        ("/locations/l-1/../l-2/clients/export", "/locations/l-2/clients/export"),
        ("/locations/l-1/./calendar", "/locations/l-1/calendar"),
        ("//locations///l-1//clients", "/locations/l-1/clients"),
        ("/locations/l-1/clients/", "/locations/l-1/clients"),
        ("/locations/l-1/clients?format=csv", "/locations/l-1/clients"),
        ("/locations/l-1/clients?next=/../../finance#frag", "/locations/l-1/clients"),
        ("/locations/l-1/clients#/../../finance", "/locations/l-1/clients"),
        ("/locations/l-1/clients/%2e%2e/reports", "/locations/l-1/reports"),
        ("/locations/l-1/clients/%2E%2e/reports", "/locations/l-1/reports"),
        ("/locations/l-1/clients/%2e/export", "/locations/l-1/clients/export"),
        ("/locations/l-1/clients/.%2e/.%2E/l-2/finance", "/locations/l-2/finance"),
        ("/../../locations/l-1/calendar", "/locations/l-1/calendar"),
        ("/..", "/"),
        ("/locations/l%2D1/calendar", "/locations/l-1/calendar"),
        ("/clients/J%C3%BCrgen", "/clients/Jürgen"),
    ],
    ids=[
        "plain",
        "root",
        "dot_dot_segment",
        "dot_segment",
        "repeated_slashes",
        "trailing_slash",
        "query_string",
        "query_with_dot_dot",
        "fragment_with_dot_dot",
        "encoded_dot_dot",
        "encoded_dot_dot_mixed_case",
        "encoded_dot",
        "half_encoded_dot_dots",
        "dot_dot_above_root",
        "only_dot_dot",
        "encoded_unreserved",
        "utf8_segment",
    ],
)
def test_normalize_path(target: str, expected: str) -> None:
    assert normalize_path(target) == expected


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/locations/l-1%2F..%2Fl-2/clients", "encoded_separator"),
        ("/locations/l-1/clients%2fexport", "encoded_separator"),
        ("/locations/l-1/clients%5Cexport", "encoded_separator"),
        ("/locations/l-1/clients%5c..%5cfinance", "encoded_separator"),
        ("/locations/l-1\\clients", "backslash"),
        ("/locations/l-1/clients\\..\\finance", "backslash"),
        ("/locations/l-1/clients/%252e%252e/finance", "double_encoding"),
        ("/locations/l-1/clients%252Fexport", "double_encoding"),
        ("/locations/l-1/clients/%00", "control_character"),
        ("/locations/l-1/clients%00.json", "control_character"),
        ("/locations/l-1/clients%0d%0aX-Employee-Id:%20e-9", "control_character"),
        ("/locations/l-1/clients/%7F", "control_character"),
        ("/locations/l-1/clients/%C2%85", "control_character"),
        ("/locations/l-1/clients/%C3%28", "invalid_utf8"),
        ("/locations/l-1/clients/%FF", "invalid_utf8"),
        ("/locations/l-1/clients/%E2%80", "invalid_utf8"),
        ("/locations/l-1/clients/%C0%AE%C0%AE", "invalid_utf8"),
        ("/locations/l-1/clients/%", "bad_escape"),
        ("/locations/l-1/clients/%2", "bad_escape"),
        ("/locations/l-1/clients/%zz", "bad_escape"),
        ("/locations/l-1/appointments/..;/..;/settings", "path_parameter"),
        ("/locations/l-1/clients;jsessionid=1/export", "path_parameter"),
        ("/locations/l-1/clients%3Bx/export", "path_parameter"),
        ("/locations/l-1/clients%3F/export", "encoded_delimiter"),
        ("/locations/l-1/clients%23/export", "encoded_delimiter"),
        ("/locations/l-1/clients/%EF%BC%8E%EF%BC%8E", "confusable_character"),
        ("/locations/l-1/clients%EF%BC%8Fexport", "confusable_character"),
        ("/locations/l 1/calendar", "bad_character"),
        ("/locations/l-1/calendar\t", "bad_character"),
        ("/locations/l-1/cal\x00endar", "bad_character"),
        ("/locations/l-1/clients/J\u00fcrgen", "bad_character"),
        ("locations/l-1/calendar", "not_origin_form"),
        ("*", "not_origin_form"),
        ("http://other.example/locations/l-1/calendar", "not_origin_form"),
        ("", "not_origin_form"),
        ("?/locations/l-1/calendar", "not_origin_form"),
        ("/" + "a" * 9000, "too_long"),
    ],
    ids=[
        "encoded_slash_dot_dot",
        "encoded_slash_lowercase",
        "encoded_backslash",
        "encoded_backslash_dot_dot",
        "raw_backslash",
        "raw_backslash_dot_dot",
        "double_encoded_dot_dot",
        "double_encoded_slash",
        "encoded_nul_segment",
        "encoded_nul_suffix",
        "encoded_crlf_header_injection",
        "encoded_del",
        "encoded_c1_control",
        "invalid_utf8_sequence",
        "invalid_utf8_byte",
        "truncated_utf8",
        "overlong_utf8_dots",
        "lone_percent",
        "short_escape",
        "non_hex_escape",
        "tomcat_dot_dot_semicolon",
        "path_parameter",
        "encoded_semicolon",
        "encoded_question_mark",
        "encoded_hash",
        "fullwidth_dots",
        "fullwidth_slash",
        "raw_space",
        "raw_tab",
        "raw_nul",
        "raw_non_ascii",
        "relative",
        "asterisk_form",
        "absolute_form",
        "empty",
        "query_only",
        "too_long",
    ],
)
def test_normalize_path_rejects(target: str, reason: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        normalize_path(target)
    assert caught.value.reason == reason
    assert caught.value.status == 403


@given(st.text(alphabet="/.%2eEfF5cC;?#ab-\\", max_size=40).map(lambda s: "/" + s))
def test_normalized_path_is_canonical(target: str) -> None:
    """Whatever a trick decodes to, the result has no dot, empty or encoded segment left, and is a fixpoint."""
    try:
        path = normalize_path(target)
    except RequestRejected:
        return
    assert path == "/" or not path.endswith("/")
    segments = path.split("/")[1:]
    assert path == "/" or all(segment not in ("", ".", "..") for segment in segments)
    assert not any(char in path for char in "\\%;?#")
    assert normalize_path(path) == path


# --- finding the original request ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        (
            "GET",
            "/v1/forward-auth",
            {"X-Original-Method": "DELETE", "X-Original-URI": "/locations/l-1/clients/c-9?x=1"},
            ("DELETE", "/locations/l-1/clients/c-9", "nginx"),
        ),
        (
            "GET",
            "/v1/forward-auth",
            {"x-original-method": "POST", "x-original-uri": "/locations/l-1/appointments"},
            ("POST", "/locations/l-1/appointments", "nginx"),
        ),
        (
            "GET",
            "/v1/forward-auth",
            {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/locations/l-1/clients/export"},
            ("GET", "/locations/l-1/clients/export", "traefik"),
        ),
        (
            "PUT",
            "/v1/forward-auth/locations/l-1/settings?draft=1",
            {"Authorization": "Bearer x"},
            ("PUT", "/locations/l-1/settings", "envoy"),
        ),
        (
            "GET",
            "/v1/forward-auth/locations/l-1/x/%2e%2e/clients",
            {},
            ("GET", "/locations/l-1/clients", "envoy"),
        ),
        (
            "GET",
            "/v1/forward-auth",
            {
                "X-Original-Method": "GET",
                "X-Original-URI": "/locations/l-1/calendar",
                "X-Forwarded-Method": "GET",
                "X-Forwarded-Uri": "/locations/l-1//calendar/",
            },
            ("GET", "/locations/l-1/calendar", "nginx"),
        ),
        (
            "GET",
            "/v1/forward-auth",
            {"X-Original-Method": "GET", "X-Original-URI": "/locations/l-1/clients/../../l-2/finance"},
            ("GET", "/locations/l-2/finance", "nginx"),
        ),
        (
            "GET",
            "/v1/forward-auth",
            {"X-Original-Method": "get", "X-Original-URI": "/locations/l-1/clients"},
            ("get", "/locations/l-1/clients", "nginx"),
        ),
    ],
    ids=[
        "nginx_headers",
        "nginx_headers_lower_case_names",
        "traefik_headers",
        "envoy_path_after_prefix",
        "envoy_path_is_normalised",
        "nginx_and_traefik_agree",
        "nginx_uri_is_normalised",
        "method_case_is_kept",
    ],
)
def test_original_request(method: str, target: str, headers: dict[str, str], expected: tuple[str, str, str]) -> None:
    found = original_request(method, target, headers)
    assert (found.method, found.path, found.source) == expected


def test_original_request_with_custom_prefix() -> None:
    found = original_request("DELETE", "/auth/locations/l-1/clients/c-1", {}, prefix="/auth")
    assert (found.method, found.path, found.source) == ("DELETE", "/locations/l-1/clients/c-1", "envoy")


def test_original_request_accepts_werkzeug_headers() -> None:
    environ = {"HTTP_X_ORIGINAL_METHOD": "GET", "HTTP_X_ORIGINAL_URI": "/locations/l-1/calendar"}
    found = original_request("GET", "/v1/forward-auth", EnvironHeaders(environ))
    assert (found.method, found.path) == ("GET", "/locations/l-1/calendar")


@pytest.mark.parametrize(
    ("method", "target", "headers", "reason"),
    [
        ("GET", "/v1/forward-auth", {}, "missing_original_request"),
        ("GET", "/v1/forward-auth?/locations/l-1/calendar", {}, "missing_original_request"),
        ("GET", "/v1/forward-authx/locations/l-1/calendar", {}, "missing_original_request"),
        ("GET", "/v1/forward-auth", {"X-Original-URI": "/locations/l-1/calendar"}, "incomplete_original_request"),
        ("GET", "/v1/forward-auth", {"X-Forwarded-Method": "GET"}, "incomplete_original_request"),
        (
            "GET",
            "/v1/forward-auth",
            {
                "X-Original-Method": "DELETE",
                "X-Original-URI": "/locations/l-1/clients/c-1",
                "X-Forwarded-Method": "GET",
                "X-Forwarded-Uri": "/locations/l-1/calendar",
            },
            "ambiguous_original_request",
        ),
        (
            "DELETE",
            "/v1/forward-auth/locations/l-1/clients/c-1",
            {"X-Original-Method": "GET", "X-Original-URI": "/locations/l-1/calendar"},
            "ambiguous_original_request",
        ),
        (
            "GET",
            "/v1/forward-auth",
            {"X-Original-Method": "GE T", "X-Original-URI": "/locations/l-1/calendar"},
            "bad_method",
        ),
        (
            "GET",
            "/v1/forward-auth",
            {"X-Original-Method": "GET", "X-Original-URI": "/locations/l-1%2F..%2Fl-2/calendar"},
            "encoded_separator",
        ),
    ],
    ids=[
        "no_source",
        "prefix_with_query_only",
        "prefix_is_not_a_path_prefix",
        "nginx_uri_without_method",
        "traefik_method_without_uri",
        "nginx_and_traefik_disagree",
        "envoy_path_and_nginx_headers_disagree",
        "bad_method",
        "trick_in_header",
    ],
)
def test_original_request_rejects(method: str, target: str, headers: dict[str, str], reason: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        original_request(method, target, headers)
    assert caught.value.reason == reason


def test_duplicate_header_with_different_values_is_ambiguous() -> None:
    headers = Headers(
        [
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/locations/l-1/calendar"),
            ("X-Original-URI", "/locations/l-1/finance"),
        ]
    )
    with pytest.raises(RequestRejected) as caught:
        original_request("GET", "/v1/forward-auth", headers)
    assert caught.value.reason == "ambiguous_original_request"
