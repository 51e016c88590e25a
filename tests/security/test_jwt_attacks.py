"""JWT attacks after jwt_tool's playbook, played against the running app.

Every forged token is otherwise valid for a signed-in user (real ``sub`` and ``sid``),
so each test would let the attacker in if the one check it targets were removed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import OKPAlgorithm

from graphql_api.auth.keys import KeySet
from tests.conftest import GraphQLClient
from tests.fake_google import FakeGoogle
from tests.security.conftest import (
    assert_unauthenticated,
    b64,
    claims_of,
    forge,
    me_with,
    segment,
    sign,
)


@pytest.fixture
def genuine(user: GraphQLClient) -> dict[str, Any]:
    assert user.token is not None
    return claims_of(user.token)


@pytest.fixture
def attacker_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_forms(keys: KeySet) -> dict[str, bytes]:
    """Our public key as an attacker would find it, in every encoding jwt_tool tries."""
    public = keys.current.verifying_key
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    jwk = json.dumps(keys.public_jwks()["keys"][0]).encode()
    return {
        "pem": pem,
        "pem-crlf": pem.replace(b"\n", b"\r\n"),
        "pem-no-final-newline": pem.rstrip(b"\n"),
        "pem-one-line": pem.replace(b"\n", b""),
        "der": public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        "raw": public.public_bytes(Encoding.Raw, PublicFormat.Raw),
        "jwk-json": jwk,
        "jwks-json": json.dumps(keys.public_jwks()).encode(),
    }


async def test_request_without_token_is_unauthenticated(anonymous: GraphQLClient) -> None:
    assert_unauthenticated(await anonymous.gql("{ me { id } }"))


async def test_genuine_and_resigned_tokens_are_accepted(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet
) -> None:
    # The baseline every forgery below is measured against: the suite's own signing
    # helper makes tokens the service accepts, so a refusal is the targeted check's doing.
    for token in (user.token or "", sign(keys, genuine)):
        body = await me_with(user, token)
        assert body["data"]["me"]["id"] == user.user_id, body


async def test_token_with_a_broken_signature_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet, attacker_key: Ed25519PrivateKey
) -> None:
    header = {"kid": keys.current.kid, "typ": "at+jwt"}
    token = jwt.encode(genuine, attacker_key, algorithm="EdDSA", headers=header)
    assert_unauthenticated(await me_with(user, token))


async def test_payload_swapped_under_a_genuine_signature_is_refused(
    user: GraphQLClient, other_user: GraphQLClient, genuine: dict[str, Any]
) -> None:
    header, _, signature = (user.token or "").split(".")
    forged = f"{header}.{segment({**genuine, 'sub': other_user.user_id})}.{signature}"
    assert_unauthenticated(await me_with(user, forged))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
@pytest.mark.parametrize("keep_signature", [False, True], ids=["empty-sig", "kept-sig"])
async def test_alg_none_token_is_refused(
    user: GraphQLClient,
    genuine: dict[str, Any],
    keys: KeySet,
    alg: str,
    keep_signature: bool,
) -> None:
    token = forge({"alg": alg, "kid": keys.current.kid, "typ": "at+jwt"}, genuine, hmac_key=None)
    if keep_signature:
        token += (user.token or "").rsplit(".", 1)[1]
    assert_unauthenticated(await me_with(user, token))


async def test_null_signature_is_refused(user: GraphQLClient) -> None:
    header, payload, _ = (user.token or "").split(".")
    assert_unauthenticated(await me_with(user, f"{header}.{payload}."))
    assert_unauthenticated(await me_with(user, f"{header}.{payload}.{b64(bytes(64))}"))


@pytest.mark.parametrize(
    "form",
    [
        "pem",
        "pem-crlf",
        "pem-no-final-newline",
        "pem-one-line",
        "der",
        "raw",
        "jwk-json",
        "jwks-json",
    ],
)
async def test_hs256_signed_with_our_public_key_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet, form: str
) -> None:
    secret = public_forms(keys)[form]
    header = {"alg": "HS256", "kid": keys.current.kid, "typ": "at+jwt"}
    assert_unauthenticated(await me_with(user, forge(header, genuine, hmac_key=secret)))


@pytest.mark.parametrize(
    "secret", ["", "secret", "changeme", "password", "graphql-api", "jwt", "your-256-bit-secret"]
)
async def test_hs256_with_blank_or_common_secret_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet, secret: str
) -> None:
    header = {"alg": "HS256", "kid": keys.current.kid, "typ": "at+jwt"}
    assert_unauthenticated(await me_with(user, forge(header, genuine, hmac_key=secret.encode())))


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/dev/null",
        "/proc/self/environ",
        "x' UNION SELECT 'attacker'--",
        "' OR '1'='1",
        "",
        None,
        0,
        ["kid"],
        "| touch /tmp/pwned",
    ],
)
async def test_kid_injection_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], kid: Any
) -> None:
    # jwt_tool signs these with the content it hopes the kid selects: empty or "attacker".
    for secret in (b"", b"attacker"):
        header = {"alg": "HS256", "kid": kid, "typ": "at+jwt"}
        assert_unauthenticated(await me_with(user, forge(header, genuine, hmac_key=secret)))


@pytest.fixture
def no_outbound(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Records, and refuses, every connection or DNS lookup beyond the loopback."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("/"):
            attempts.append(address)
            raise OSError("outbound connection refused by the test")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "::1", "localhost", None):
            attempts.append(host)
            raise OSError("DNS refused by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts


@pytest.mark.parametrize("header_name", ["jku", "x5u"])
async def test_key_url_headers_are_refused_without_fetching(
    user: GraphQLClient,
    genuine: dict[str, Any],
    fake_google: FakeGoogle,
    no_outbound: list[Any],
    header_name: str,
) -> None:
    # Signed by a key the attacker publishes (the fake issuer's), at both a loopback URL
    # (would show up in its request count) and a remote one (would try to connect).
    before = fake_google.requests
    for url in (fake_google.jwks_url, "https://attacker.example/.well-known/jwks.json"):
        header = {header_name: url, "kid": fake_google.key.kid, "typ": "at+jwt"}
        token = jwt.encode(genuine, fake_google.key.private, algorithm="RS256", headers=header)
        assert_unauthenticated(await me_with(user, token))
    assert fake_google.requests == before
    assert no_outbound == []


async def test_injected_jwk_header_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], attacker_key: Ed25519PrivateKey
) -> None:
    jwk = json.loads(OKPAlgorithm.to_jwk(attacker_key.public_key()))
    for kid in ("attacker", jwk.get("kid", "attacker")):
        header = {"jwk": {**jwk, "kid": kid}, "kid": kid, "typ": "at+jwt"}
        token = jwt.encode(genuine, attacker_key, algorithm="EdDSA", headers=header)
        assert_unauthenticated(await me_with(user, token))


async def test_embedded_x5c_certificate_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], fake_google: FakeGoogle
) -> None:
    cert = "".join(fake_google.key.pem_cert.splitlines()[1:-1])
    header = {"x5c": [cert], "kid": fake_google.key.kid, "typ": "at+jwt"}
    token = jwt.encode(genuine, fake_google.key.private, algorithm="RS256", headers=header)
    assert_unauthenticated(await me_with(user, token))


async def test_unknown_crit_header_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet
) -> None:
    token = sign(keys, genuine, crit=["urn:attacker:ignore-exp"])
    assert_unauthenticated(await me_with(user, token))


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "exp", "jti", "sid"])
async def test_token_missing_a_required_claim_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet, claim: str
) -> None:
    payload = {k: v for k, v in genuine.items() if k != claim}
    assert_unauthenticated(await me_with(user, sign(keys, payload)))


@pytest.mark.parametrize(
    "iss",
    [
        "graphql-api-evil",
        "evil-graphql-api",
        "https://evil.example/graphql-api",
        "GRAPHQL-API",
        ["graphql-api"],
        "graphql-api\u0000",
        "",
    ],
)
async def test_issuer_that_merely_contains_ours_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet, iss: Any
) -> None:
    assert_unauthenticated(await me_with(user, sign(keys, {**genuine, "iss": iss})))


@pytest.mark.parametrize(
    "aud",
    [["graphql-api", "other-service"], ["graphql-api"], "other-service", "graphql-api-evil", ""],
)
async def test_list_or_foreign_audience_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet, aud: Any
) -> None:
    assert_unauthenticated(await me_with(user, sign(keys, {**genuine, "aud": aud})))


async def test_expired_token_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet
) -> None:
    now = int(time.time())
    expired = {**genuine, "iat": now - 3600, "exp": now - 60}
    assert_unauthenticated(await me_with(user, sign(keys, expired)))


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_token_from_the_future_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet, claim: str
) -> None:
    future = {**genuine, claim: int(time.time()) + 600, "exp": int(time.time()) + 1200}
    assert_unauthenticated(await me_with(user, sign(keys, future)))


@pytest.mark.parametrize("typ", [None, "JWT", "refresh+jwt", "at+JWT"])
async def test_token_of_another_type_is_refused(
    user: GraphQLClient, genuine: dict[str, Any], keys: KeySet, typ: str | None
) -> None:
    key = keys.current
    header: dict[str, Any] = {"kid": key.kid} | ({"typ": typ} if typ else {})
    token = jwt.encode(genuine, key.signing_key, algorithm=key.algorithm, headers=header)
    assert_unauthenticated(await me_with(user, token))


async def test_refresh_token_used_as_access_token_is_refused(user: GraphQLClient) -> None:
    assert user.refresh is not None
    assert_unauthenticated(await me_with(user, user.refresh))


async def test_google_id_token_used_as_access_token_is_refused(
    user: GraphQLClient, fake_google: FakeGoogle
) -> None:
    id_token = fake_google.mint(sub="sub-user", email="user@example.com")
    assert_unauthenticated(await me_with(user, id_token))


@pytest.mark.parametrize("shape", ["two-segments", "four-segments", "100-kb", "garbage"])
async def test_malformed_or_oversized_token_is_refused(user: GraphQLClient, shape: str) -> None:
    header, payload, signature = (user.token or "").split(".")
    token = {
        "two-segments": f"{header}.{payload}",
        "four-segments": f"{header}.{payload}.{signature}.{signature}",
        "100-kb": f"{header}.{payload}{'A' * 100_000}.{signature}",
        "garbage": "not-a-jwt-at-all",
    }[shape]
    assert_unauthenticated(await me_with(user, token))


async def test_token_of_an_ended_session_is_refused(user: GraphQLClient) -> None:
    token = user.token or ""
    assert (await user.data("mutation { logout }"))["logout"] is True
    assert_unauthenticated(await me_with(user, token))
