"""Employee JWT verification for forward-auth (sidecar.forward_auth.jwt_auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sidecar.config import ConfigError, Settings
from sidecar.forward_auth.jwt_auth import InvalidToken, JwtVerifier, bearer_token, load_verifier

SECRET = "s" * 40
OTHER_SECRET = "o" * 40


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "e-1", "iat": now, "exp": now + 3600}  # minted at collection: outlive a slow run
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], key: bytes | None = None) -> str:
    """A token assembled by hand: what an attacker can send regardless of library safeguards."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


# --- valid tokens --------------------------------------------------------------------------


def test_valid_hs256_token_names_the_employee() -> None:
    identity = JwtVerifier(secret=SECRET).verify(hs256(claims()))
    assert identity.employee == "e-1"
    assert identity.mfa is False
    assert identity.location is None


def test_valid_rs256_token_with_rsa_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(claims(sub="e-7"), rsa_key, algorithm="RS256")
    assert JwtVerifier(public_key=public_pem(rsa_key)).verify(token).employee == "e-7"


def test_valid_es256_token_with_ec_public_key(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.encode(claims(sub="e-8"), ec_key, algorithm="ES256")
    assert JwtVerifier(public_key=public_pem(ec_key)).verify(token).employee == "e-8"


@pytest.mark.parametrize(
    ("amr", "mfa"),
    [
        (["pwd", "mfa"], True),
        (["pwd"], False),
        (None, False),
        ("mfa", False),  # amr is a list (RFC 8176); a bare string does not count
    ],
    ids=["amr_list_with_mfa", "amr_without_mfa", "no_amr", "amr_string_not_list"],
)
def test_amr_mfa_sets_mfa(amr: Any, mfa: bool) -> None:
    assert JwtVerifier(secret=SECRET).verify(hs256(claims(amr=amr))).mfa is mfa


def test_loc_claim_is_exposed_when_it_is_an_id() -> None:
    verifier = JwtVerifier(secret=SECRET)
    assert verifier.verify(hs256(claims(loc="l-1"))).location == "l-1"
    assert verifier.verify(hs256(claims(loc="Berlin, DE"))).location is None


def test_expiry_within_leeway_is_accepted() -> None:
    token = hs256(claims(exp=int(time.time()) - 2))
    assert JwtVerifier(secret=SECRET, leeway=5).verify(token).employee == "e-1"


def test_matching_issuer_and_audience_are_accepted() -> None:
    verifier = JwtVerifier(secret=SECRET, issuer="https://idp.example", audience="sidecar")
    assert verifier.verify(hs256(claims(iss="https://idp.example", aud=["other", "sidecar"]))).employee == "e-1"


def test_audience_is_not_checked_when_none_is_configured() -> None:
    assert JwtVerifier(secret=SECRET).verify(hs256(claims(aud="anything"))).employee == "e-1"


# --- every failure has a reason --------------------------------------------------------------


def reason_of(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.status == 401
    return caught.value.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(exp=int(time.time()) - 60), "expired"),
        (claims(exp=None), "missing_exp"),
        (claims(nbf=int(time.time()) + 3600), "not_yet_valid"),
        (claims(iat=int(time.time()) + 3600), "not_yet_valid"),
        (claims(sub=None), "bad_subject"),
        (claims(sub="e 1"), "bad_subject"),
        (claims(sub="e-1\n"), "bad_subject"),
        (claims(sub="x" * 65), "bad_subject"),
        (claims(sub=42), "bad_subject"),
        (claims(exp="9999999999"), "malformed"),
    ],
    ids=[
        "expired",
        "no_exp",
        "nbf_in_future",
        "iat_in_future",
        "no_sub",
        "sub_with_space",
        "sub_with_trailing_newline",
        "sub_too_long",
        "sub_not_string",
        "exp_as_string",
    ],
)
def test_claims_problem_is_refused(payload: dict[str, Any], reason: str) -> None:
    assert reason_of(JwtVerifier(secret=SECRET), hs256(payload)) == reason


def test_forged_signature_is_refused() -> None:
    assert reason_of(JwtVerifier(secret=SECRET), hs256(claims(), OTHER_SECRET)) == "bad_signature"


def test_tampered_payload_is_refused() -> None:
    header, _, signature = hs256(claims(sub="e-1")).split(".")
    forged = f"{header}.{b64(json.dumps(claims(sub='e-admin')).encode())}.{signature}"
    assert reason_of(JwtVerifier(secret=SECRET), forged) == "bad_signature"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""], ids=["none", "None", "NONE", "empty"])
def test_alg_none_is_refused(alg: str) -> None:
    token = handmade({"alg": alg, "typ": "JWT"}, claims())
    assert reason_of(JwtVerifier(secret=SECRET), token) == "bad_algorithm"


def test_missing_alg_is_refused() -> None:
    assert reason_of(JwtVerifier(secret=SECRET), handmade({"typ": "JWT"}, claims())) == "bad_algorithm"


def test_hs256_signed_with_rsa_public_key_bytes_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """Key confusion: the attacker knows the public key and uses its PEM bytes as an HMAC secret."""
    pem = public_pem(rsa_key)
    token = handmade({"alg": "HS256", "typ": "JWT"}, claims(), key=pem.encode())
    assert reason_of(JwtVerifier(public_key=pem), token) == "bad_algorithm"


def test_hs256_with_rsa_public_key_bytes_refused_even_when_a_secret_is_also_configured(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    pem = public_pem(rsa_key)
    token = handmade({"alg": "HS256", "typ": "JWT"}, claims(), key=pem.encode())
    assert reason_of(JwtVerifier(secret=SECRET, public_key=pem), token) == "bad_signature"


def test_rs256_token_refused_when_only_a_secret_is_configured(rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert reason_of(JwtVerifier(secret=SECRET), token) == "bad_algorithm"


def test_es256_token_refused_when_an_rsa_key_is_configured(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert reason_of(JwtVerifier(public_key=public_pem(rsa_key)), token) == "bad_algorithm"


def test_rs256_signed_by_another_rsa_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256")
    assert reason_of(JwtVerifier(public_key=public_pem(rsa_key)), token) == "bad_signature"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(iss="https://evil.example", aud="sidecar"), "bad_issuer"),
        (claims(aud="sidecar"), "bad_issuer"),
        (claims(iss="https://idp.example", aud="other-service"), "bad_audience"),
        (claims(iss="https://idp.example"), "bad_audience"),
    ],
    ids=["wrong_issuer", "missing_issuer", "wrong_audience", "missing_audience"],
)
def test_issuer_and_audience_are_checked_when_configured(payload: dict[str, Any], reason: str) -> None:
    verifier = JwtVerifier(secret=SECRET, issuer="https://idp.example", audience="sidecar")
    assert reason_of(verifier, hs256(payload)) == reason


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "a.b", "....", "x" * 20000],
    ids=["no_dots", "garbage_segments", "two_segments", "empty_segments", "too_long"],
)
def test_malformed_token_is_refused(token: str) -> None:
    assert reason_of(JwtVerifier(secret=SECRET), token) == "malformed"


def test_unknown_critical_header_is_refused() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"crit": ["exp-ext"], "exp-ext": 1})
    assert reason_of(JwtVerifier(secret=SECRET), token) == "malformed"


# --- the Authorization header ----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc"],
    ids=["absent", "empty", "scheme_only", "scheme_and_spaces", "basic_scheme", "other_scheme"],
)
def test_missing_bearer_token(header: str | None) -> None:
    with pytest.raises(InvalidToken) as caught:
        bearer_token(header)
    assert caught.value.reason == "missing_token"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    token = hs256(claims())
    assert JwtVerifier(secret=SECRET).verify_authorization(f"{scheme} {token}").employee == "e-1"


def test_invalid_token_error_body_names_the_reason() -> None:
    error = InvalidToken("expired", "token expired")
    assert error.body() == {"error": {"code": "invalid_token", "message": "token expired", "reason": "expired"}}


# --- configuration ---------------------------------------------------------------------------


def test_algorithms_come_from_the_key_types(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    assert JwtVerifier(secret=SECRET).algorithms == {"HS256"}
    assert JwtVerifier(secret="k" * 64).algorithms == {"HS256", "HS384", "HS512"}
    assert JwtVerifier(public_key=public_pem(ec_key)).algorithms == {"ES256"}
    assert "RS256" in JwtVerifier(public_key=public_pem(rsa_key)).algorithms
    assert "HS256" not in JwtVerifier(public_key=public_pem(rsa_key)).algorithms


def test_load_verifier_is_none_without_a_key() -> None:
    assert load_verifier(Settings()) is None


def test_load_verifier_reads_settings() -> None:
    verifier = load_verifier(Settings(jwt_secret=SECRET, jwt_issuer="i", jwt_audience="a"))
    assert verifier is not None
    assert (verifier.issuer, verifier.audience) == ("i", "a")


@pytest.mark.parametrize(
    "public_key",
    ["-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", "hello"],
    ids=["bad_pem", "not_pem"],
)
def test_unusable_public_key_is_a_config_error(public_key: str) -> None:
    with pytest.raises(ConfigError):
        JwtVerifier(public_key=public_key)


def test_private_key_in_public_key_setting_is_a_config_error(ec_key: ec.EllipticCurvePrivateKey) -> None:
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ConfigError):
        JwtVerifier(public_key=pem)


def test_pem_in_secret_setting_is_a_config_error(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError):
        JwtVerifier(secret=public_pem(rsa_key))


def test_repr_does_not_show_the_secret() -> None:
    assert SECRET not in repr(JwtVerifier(secret=SECRET))


# --- the cache of verified tokens ------------------------------------------------------------


class Clock:
    """A wall clock the test moves by hand (the cache's; PyJWT keeps the real one)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_verified_token_is_remembered_and_answered_alike() -> None:
    verifier = JwtVerifier(secret=SECRET)
    token = hs256(claims(amr=["mfa"], loc="l-1"))
    assert not verifier.cached(token)
    first = verifier.verify(token)
    assert verifier.cached(token)
    assert verifier.verify(token) == first
    assert (first.employee, first.mfa, first.location) == ("e-1", True, "l-1")


def test_the_remembered_identity_is_read_only() -> None:
    identity = JwtVerifier(secret=SECRET).verify(hs256(claims()))
    with pytest.raises(TypeError):
        identity.claims["sub"] = "e-admin"  # type: ignore[index]


@pytest.mark.parametrize("token", [
    hs256(claims(), OTHER_SECRET),
    hs256(claims(exp=int(time.time()) - 60)),
    "not.a.jwt",
], ids=["bad_signature", "expired", "malformed"])
def test_a_refused_token_is_never_remembered(token: str) -> None:
    verifier = JwtVerifier(secret=SECRET)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.verify(token)
        assert not verifier.cached(token)


def test_a_tampered_copy_of_a_remembered_token_is_verified_in_full() -> None:
    verifier = JwtVerifier(secret=SECRET)
    token = hs256(claims(sub="e-1"))
    verifier.verify(token)
    header, payload, signature = token.split(".")
    forged_payload = f"{header}.{b64(json.dumps(claims(sub='e-admin')).encode())}.{signature}"
    flipped = "A" if signature[0] != "A" else "B"
    forged_signature = f"{header}.{payload}.{flipped}{signature[1:]}"
    for forged in (forged_payload, forged_signature, token + "x", " " + token):
        assert not verifier.cached(forged)
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
    assert verifier.verify(token).employee == "e-1"  # the genuine one is still served


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    """Real time, no leeway: the token passes, is remembered, then expires; the cache must not
    keep answering for it (its TTL, 30 s, is far longer than the token's life)."""
    verifier = JwtVerifier(secret=SECRET, leeway=0)
    expires = int(time.time()) + 2
    token = hs256(claims(exp=expires))
    assert verifier.verify(token).employee == "e-1"
    assert verifier.cached(token)
    while time.time() < expires:
        time.sleep(0.05)
    assert not verifier.cached(token)
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.reason == "expired"


def test_an_entry_is_served_until_its_exp_at_the_latest() -> None:
    clock = Clock()
    verifier = JwtVerifier(secret=SECRET, clock=clock, cache_ttl_s=3600)
    token = hs256(claims(exp=int(clock.now) + 600))
    verifier.verify(token)
    clock.now = float(int(clock.now) + 599)
    assert verifier.cached(token)
    clock.now = float(int(clock.now) + 1)  # exp itself: never served, whatever the leeway
    assert not verifier.cached(token)


def test_an_entry_is_served_for_the_ttl_at_most() -> None:
    clock = Clock()
    verifier = JwtVerifier(secret=SECRET, clock=clock, cache_ttl_s=30)
    token = hs256(claims())
    verifier.verify(token)
    start = clock.now
    clock.now = start + 29.9
    assert verifier.cached(token)
    clock.now = start + 30
    assert not verifier.cached(token)
    verifier.verify(token)  # verified in full again, remembered from now
    assert verifier.cached(token)


def test_a_clock_stepped_back_makes_entries_unusable() -> None:
    clock = Clock()
    verifier = JwtVerifier(secret=SECRET, clock=clock)
    token = hs256(claims())
    verifier.verify(token)
    clock.now -= 10  # before the verification: nothing vouches for that moment
    assert not verifier.cached(token)


def test_the_cache_is_bounded_and_drops_the_oldest_first() -> None:
    verifier = JwtVerifier(secret=SECRET, cache_size=2)
    tokens = [hs256(claims(sub=f"e-{n}")) for n in range(3)]
    for token in tokens:
        verifier.verify(token)
    assert [verifier.cached(token) for token in tokens] == [False, True, True]
    verifier.verify(tokens[1])  # a hit does not reorder; only a new verification does
    verifier.verify(tokens[0])
    assert [verifier.cached(token) for token in tokens] == [True, False, True]


def test_a_cache_of_size_zero_remembers_nothing() -> None:
    verifier = JwtVerifier(secret=SECRET, cache_size=0)
    token = hs256(claims())
    assert verifier.verify(token).employee == "e-1"
    assert not verifier.cached(token)


def test_rotated_keys_do_not_inherit_what_the_old_verifier_remembered(rsa_key: rsa.RSAPrivateKey) -> None:
    """Keys are settings: new keys mean a new verifier (a restart, or SIGHUP's new workers), whose
    cache starts empty; a token the old one remembered is verified against the new keys."""
    old = JwtVerifier(secret=SECRET)
    token = hs256(claims())
    old.verify(token)
    assert old.cached(token)
    for rotated in (JwtVerifier(secret=OTHER_SECRET), JwtVerifier(public_key=public_pem(rsa_key))):
        assert not rotated.cached(token)
        with pytest.raises(InvalidToken) as caught:
            rotated.verify(token)
        assert caught.value.reason in ("bad_signature", "bad_algorithm")
    old.clear_cache()
    assert not old.cached(token)
