"""Signing keys: rotation keeps old tokens valid, removal ends them, JWKS shows what verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphql_api.auth.keys import KeyFileError, generate_key_file, load_key_set, rotate_key_file
from graphql_api.auth.tokens import AccessTokenCodec, InvalidToken
from tests.conftest import FakeClock, GraphQLClient


def codec_for(path: Path) -> AccessTokenCodec:
    return AccessTokenCodec(
        keys=load_key_set(path), issuer="i", audience="a", ttl=900, leeway=5, clock=FakeClock()
    )


def test_rotation_signs_with_the_new_key_and_still_verifies_the_old(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old_kid = generate_key_file(path)
    old_token = codec_for(path).issue(user_id=1, session_id="s").token
    new_kid = rotate_key_file(path)
    rotated = codec_for(path)
    assert rotated.keys.current.kid == new_kid != old_kid
    assert rotated.decode(old_token).user_id == 1
    new_token = rotated.issue(user_id=2, session_id="s").token
    assert rotated.decode(new_token).user_id == 2


def test_a_key_removed_from_the_file_stops_verifying(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    generate_key_file(path)
    old_token = codec_for(path).issue(user_id=1, session_id="s").token
    rotate_key_file(path, keep=1)
    assert len(json.loads(path.read_text())["keys"]) == 1
    with pytest.raises(InvalidToken):
        codec_for(path).decode(old_token)


def test_key_file_is_private_and_generate_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    generate_key_file(path)
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(KeyFileError):
        generate_key_file(path)


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c2hvcnQ", "kid": "short", "alg": "HS256"},
        {"kty": "RSA", "kid": "rsa", "n": "x", "e": "AQAB"},
        {"kty": "oct", "k": "x" * 60, "kid": "k", "alg": "none"},
    ],
)
def test_weak_or_unsupported_keys_are_refused(tmp_path: Path, jwk: dict[str, Any]) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    with pytest.raises(KeyFileError):
        load_key_set(path)


def test_hs256_keys_of_32_bytes_work(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    generate_key_file(path, algorithm="HS256")
    codec = codec_for(path)
    assert codec.decode(codec.issue(user_id=3, session_id="s").token).user_id == 3
    assert load_key_set(path).public_jwks() == {"keys": []}  # nothing public to publish


async def test_jwks_endpoint_publishes_exactly_the_verifying_public_keys(
    anonymous: GraphQLClient, keys_file: Path
) -> None:
    response = await anonymous.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    published = response.json()["keys"]
    expected = {key.kid for key in load_key_set(keys_file).keys}
    assert {k["kid"] for k in published} == expected
    for key in published:
        assert "d" not in key and key["kty"] == "OKP" and key["alg"] == "EdDSA"


async def test_a_running_service_follows_the_key_file_without_a_restart(
    tmp_path: Path, database_url: str, fake_google: Any
) -> None:
    from graphql_api.container import Container
    from tests.conftest import make_settings

    path = tmp_path / "keys.json"
    first_kid = generate_key_file(path)
    container = Container(make_settings(database_url, fake_google, jwt_keys_file=path))
    try:
        assert container.key_watcher is not None
        old_token = container.codec.issue(user_id=1, session_id="s").token
        assert container.codec.decode(old_token).user_id == 1  # now remembered as verified

        new_kid = rotate_key_file(path)
        assert container.key_watcher.check() is True
        assert container.codec.keys.current.kid == new_kid
        assert {k["kid"] for k in container.keys.public_jwks()["keys"]} == {first_kid, new_kid}
        assert container.codec.decode(old_token).user_id == 1  # the old key still verifies

        rotate_key_file(path, keep=1)
        assert container.key_watcher.check() is True
        with pytest.raises(InvalidToken):  # removed from the file: refused, cache or not
            container.codec.decode(old_token)

        path.write_text("{ half written")
        assert container.key_watcher.check() is False  # a broken file changes nothing
        assert len(container.codec.keys.keys) == 1
    finally:
        await container.close()
