"""Access tokens (signed JWTs) and refresh tokens (opaque random strings stored only as hashes)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NewType

import jwt

from graphql_api.auth.keys import KeySet
from graphql_api.clock import Clock

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "sid")
# Headers that would let the token pick its own verification key: never honoured.
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
MAX_TOKEN_LENGTH = 4096
VERIFIED_CACHE_SIZE = 10_000

RefreshToken = NewType("RefreshToken", str)
RefreshTokenHash = NewType("RefreshTokenHash", str)


class InvalidToken(Exception):
    """The token cannot be trusted. The reason is for logs, never for production clients;
    ``kind`` (malformed, unknown_key, expired, invalid) is what development may say."""

    def __init__(self, reason: str, *, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says. Only this type comes out of ``decode``."""

    user_id: int
    session_id: str
    jti: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str
    expires_in: int
    claims: AccessClaims


def new_refresh_token() -> RefreshToken:
    return RefreshToken("rt_" + secrets.token_urlsafe(32))


def hash_refresh_token(token: str) -> RefreshTokenHash:
    # A fast hash is right here: the token is 256 random bits, so there is nothing to
    # brute-force, and the database never holds a value that would work as a token.
    return RefreshTokenHash(hashlib.sha256(token.encode("utf-8")).hexdigest())


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: AccessClaims
    not_before: int


class AccessTokenCodec:
    """Issues and verifies access tokens.

    Verifying a signature costs more than the rest of a small request, and a client sends
    the same token until it expires, so ``decode`` remembers the tokens it has verified
    (keyed by the exact token string, at most ``cache_size``, least recently used out).
    A remembered token is still checked against the clock on every use, so it expires on
    time; whether its session was revoked is the caller's check, made on every request.
    """

    def __init__(
        self,
        *,
        keys: KeySet,
        issuer: str,
        audience: str,
        ttl: int,
        leeway: int,
        clock: Clock,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway
        self.clock = clock
        self.cache_size = cache_size
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    def replace_keys(self, keys: KeySet) -> None:
        """Sign with ``keys.current`` from now on; forget every verdict of the old keys."""
        self.keys = keys
        self._verified.clear()

    def issue(
        self, *, user_id: int, session_id: str, not_after: float | None = None
    ) -> IssuedAccessToken:
        now = int(self.clock.timestamp())
        expires = now + self.ttl
        if not_after is not None:
            # An access token never outlives its session.
            expires = max(now + 1, min(expires, int(not_after)))
        jti = secrets.token_urlsafe(16)
        key = self.keys.current
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "iat": now,
            "exp": expires,
            "jti": jti,
            "sid": session_id,
        }
        token = jwt.encode(
            payload,
            key.signing_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
        )
        claims = AccessClaims(user_id, session_id, jti, now, expires)
        return IssuedAccessToken(token, expires - now, claims)

    def decode(self, token: str) -> AccessClaims:
        verified = self._verified.get(token)
        if verified is None:
            claims, not_before = self._verify(token)
            if self.cache_size > 0:
                self._verified[token] = _Verified(claims, not_before)
                if len(self._verified) > self.cache_size:
                    self._verified.popitem(last=False)
            return claims
        claims = verified.claims
        try:
            self._check_times(claims.issued_at, claims.expires_at, verified.not_before)
        except InvalidToken:
            del self._verified[token]
            raise
        self._verified.move_to_end(token)
        return claims

    def _verify(self, token: str) -> tuple[AccessClaims, int]:
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("malformed", kind="malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("unreadable header", kind="malformed") from exc
        if FORBIDDEN_HEADERS.intersection(header):
            raise InvalidToken("forbidden header")
        if header.get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidToken("wrong typ")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown kid", kind="unknown_key")
        # The algorithm comes from our key, never from the token's own header.
        if header.get("alg") != key.algorithm:
            raise InvalidToken("algorithm does not match the key")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key.verifying_key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "strict_aud": True,
                    "verify_signature": True,
                    # Times are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": True,
                    "verify_aud": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(exc.__class__.__name__) from exc
        return self._claims(payload)

    def _claims(self, payload: dict[str, Any]) -> tuple[AccessClaims, int]:
        sub, sid, jti = payload["sub"], payload["sid"], payload["jti"]
        iat, exp, nbf = payload["iat"], payload["exp"], payload.get("nbf", 0)
        if not hmac.compare_digest(str(payload["iss"]), self.issuer):
            raise InvalidToken("issuer")
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) < 19):
            raise InvalidToken("sub")
        if not (isinstance(sid, str) and sid and isinstance(jti, str) and jti):
            raise InvalidToken("sid/jti")
        if not all(type(value) is int for value in (iat, exp, nbf)):
            raise InvalidToken("times")
        self._check_times(iat, exp, nbf)
        return AccessClaims(int(sub), sid, jti, iat, exp), nbf

    def _check_times(self, iat: int, exp: int, nbf: int) -> None:
        now = self.clock.timestamp()
        if exp <= now - self.leeway or iat > now + self.leeway or nbf > now + self.leeway:
            raise InvalidToken("expired or not yet valid", kind="expired")
