"""The access-token codec: what it issues, and the forgeries it refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from graphql_api.auth.keys import KeySet, load_key_set
from graphql_api.auth.tokens import AccessTokenCodec, InvalidToken
from tests.conftest import FakeClock

ISSUER, AUDIENCE = "graphql-api", "graphql-api"


def codec(keys: KeySet, clock: FakeClock | None = None) -> AccessTokenCodec:
    return AccessTokenCodec(
        keys=keys, issuer=ISSUER, audience=AUDIENCE, ttl=900, leeway=5, clock=clock or FakeClock()
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), signature]
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "1",
        "iat": now,
        "exp": now + 600,
        "jti": "j",
        "sid": "s",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def sign(keys: KeySet, payload: dict[str, Any], **headers: Any) -> str:
    key = keys.current
    return jwt.encode(
        payload,
        key.signing_key,
        algorithm=key.algorithm,
        headers={"kid": key.kid, "typ": "at+jwt", **headers},
    )


def test_issued_token_has_the_contract_header_and_claims(keys: KeySet) -> None:
    issued = codec(keys).issue(user_id=7, session_id="sess")
    header = jwt.get_unverified_header(issued.token)
    assert (
        header["typ"] == "at+jwt" and header["alg"] == "EdDSA" and header["kid"] == keys.current.kid
    )
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(payload) == {"iss", "aud", "sub", "iat", "exp", "jti", "sid"}
    assert payload["sub"] == "7" and payload["sid"] == "sess"
    assert payload["exp"] - payload["iat"] == 900 == issued.expires_in
    decoded = codec(keys).decode(issued.token)
    assert (decoded.user_id, decoded.session_id) == (7, "sess")


def test_access_token_never_outlives_its_session(keys: KeySet) -> None:
    soon = time.time() + 60
    issued = codec(keys).issue(user_id=1, session_id="s", not_after=soon)
    assert issued.expires_in <= 60


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(keys: KeySet, alg: str) -> None:
    token = unsigned({"alg": alg, "typ": "at+jwt", "kid": keys.current.kid}, claims())
    with pytest.raises(InvalidToken):
        codec(keys).decode(token)


def test_token_signed_with_another_key_under_our_kid_is_refused(
    keys: KeySet, tmp_path: Any
) -> None:
    from graphql_api.auth.keys import generate_key_file

    other_file = tmp_path / "other.json"
    generate_key_file(other_file)
    other = load_key_set(other_file).current
    token = jwt.encode(
        claims(),
        other.signing_key,
        algorithm="EdDSA",
        headers={"kid": keys.current.kid, "typ": "at+jwt"},
    )
    with pytest.raises(InvalidToken):
        codec(keys).decode(token)


def test_hs256_signed_with_our_public_key_is_refused(keys: KeySet) -> None:
    public = keys.current.verifying_key
    for secret in (
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(Encoding.Raw, PublicFormat.Raw),
    ):
        header = {"alg": "HS256", "typ": "at+jwt", "kid": keys.current.kid}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidToken):
            codec(keys).decode(f"{signing_input}.{b64(mac)}")


def test_unknown_kid_is_refused(keys: KeySet) -> None:
    token = jwt.encode(
        claims(),
        keys.current.signing_key,
        algorithm="EdDSA",
        headers={"kid": "someone-else", "typ": "at+jwt"},
    )
    with pytest.raises(InvalidToken):
        codec(keys).decode(token)


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "exp", "jti", "sid"])
def test_every_required_claim_is_required(keys: KeySet, claim: str) -> None:
    with pytest.raises(InvalidToken):
        codec(keys).decode(sign(keys, claims(**{claim: None})))


def test_expired_token_is_refused_beyond_the_leeway(keys: KeySet) -> None:
    clock = FakeClock()
    c = codec(keys, clock)
    token = c.issue(user_id=1, session_id="s").token
    clock.advance(900 + 4)
    assert c.decode(token).user_id == 1  # inside the 5 s leeway
    clock.advance(2)
    with pytest.raises(InvalidToken):
        c.decode(token)


@pytest.mark.parametrize(
    "header",
    [{"typ": "JWT"}, {"typ": None}, {"jku": "https://evil/jwks"}, {"jwk": {"kty": "oct"}}],
)
def test_wrong_typ_and_key_carrying_headers_are_refused(
    keys: KeySet, header: dict[str, Any]
) -> None:
    with pytest.raises(InvalidToken):
        codec(keys).decode(sign(keys, claims(), **header))


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "graphql-api.evil"},
        {"aud": ["graphql-api", "other"]},
        {"aud": "other"},
        {"sub": "not-a-number"},
        {"iat": int(time.time()) + 3600},
        {"nbf": int(time.time()) + 3600},
    ],
)
def test_claims_are_checked_exactly(keys: KeySet, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        codec(keys).decode(sign(keys, claims(**overrides)))
