"""Helpers for the attack suite: forged tokens, a production app, and outcome checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from graphql_api.auth.keys import KeySet
from tests.conftest import AppClient, GraphQLClient

ME = "{ me { id email } }"
TRACEBACK_MARKERS = ("Traceback", 'File "', "sqlalchemy", "asyncpg", "sqlite3", "psycopg")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def forge(header: dict[str, Any], payload: dict[str, Any], *, hmac_key: bytes | None) -> str:
    """A JWT built by hand: HS256 over ``hmac_key``, or no signature at all."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = ""
    if hmac_key is not None:
        mac = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
        signature = b64(mac)
    return f"{signing_input}.{signature}"


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a genuine token, to build forgeries that differ in one thing only."""
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def sign(keys: KeySet, payload: dict[str, Any], **headers: Any) -> str:
    """Signed with the service's own key: only the claim or header checks can refuse it.

    Signed by hand, since PyJWT refuses to encode some of the claims an attacker sends.
    """
    key = keys.current
    header = {"alg": key.algorithm, "kid": key.kid, "typ": "at+jwt", **headers}
    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    if key.algorithm == "HS256":
        signature = hmac.new(key.signing_key, signing_input, hashlib.sha256).digest()
    else:
        signature = key.signing_key.sign(signing_input)
    return f"{signing_input.decode()}.{b64(signature)}"


async def me_with(client: GraphQLClient, token: str) -> dict[str, Any]:
    response = await client.http.post(
        "/graphql", json={"query": ME}, headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_unauthenticated(body: dict[str, Any]) -> None:
    assert body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"], body


def assert_no_internals(text: str) -> None:
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, text


@pytest.fixture
async def production_client(app_client: AppClient, keys_file: Path) -> GraphQLClient:
    """An anonymous client of the app built with production settings, serving free-form
    queries (the attacks here are documents; tests/security/test_trusted_documents.py
    plays them against ``require``)."""
    return await app_client(env="production", jwt_keys_file=keys_file, trusted_documents="off")
