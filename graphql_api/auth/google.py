"""Verification of Google ID tokens with google-auth, over a cached certificate set."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

import google.auth.exceptions
import google.auth.transport
import jwt
from google.oauth2 import id_token as google_id_token

from graphql_api.clock import Clock
from graphql_api.errors import ServiceUnavailable

logger = logging.getLogger("graphql_api.google")

GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
MIN_REFETCH_INTERVAL = 60.0
DEFAULT_MAX_AGE = 300.0
DEFAULT_FETCH_DEADLINE = 3.0
FIRST_RETRY = 1.0  # after a failed fetch with no certificates at all; doubles up to a minute
GOOGLE_UNAVAILABLE = "Google sign-in is unavailable right now; retry later."
MAX_ID_TOKEN_LENGTH = 8192
SUB_MAX = 255  # Google documents its subject identifiers as at most 255 characters
EMAIL_MAX = 320  # the longest address SMTP allows (RFC 5321), and the column's size
_MAX_AGE = re.compile(r"max-age=(\d+)")


class InvalidGoogleToken(Exception):
    """The ID token is not a valid Google sign-in for this service; reason for logs only."""


@dataclass(frozen=True, slots=True)
class GoogleIdentity:
    """Who signed in. ``sub`` and ``email`` are checked identifiers; ``name`` and
    ``picture`` are the profile exactly as Google sent it (the service cleans them)."""

    sub: str
    email: str
    name: object
    picture: object
    token_id: str
    expires_at: int


def _identifier(value: object, *, max_length: int) -> str | None:
    """An identity field (a subject, an address) exactly as sent, or None when it could not
    be one: never altered, since it decides who signs in and who is an admin."""
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        return None
    # isprintable() is false for controls, format characters, surrogates and every
    # separator but the ASCII space; identifiers have no spaces either.
    if not value.isprintable() or " " in value:
        return None
    return value


@dataclass(frozen=True, slots=True)
class CertsResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class CertsFetcher(Protocol):
    async def fetch(self, url: str) -> CertsResponse: ...


class HttpxCertsFetcher:
    """Fetches certificates without blocking the event loop.

    ``timeout`` bounds each connect and read only; ``CertificateCache`` bounds the whole.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout

    async def fetch(self, url: str) -> CertsResponse:
        import httpx

        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            response = await client.get(url)
        return CertsResponse(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )


class _Response(google.auth.transport.Response):
    def __init__(self, body: bytes) -> None:
        self._body = body

    @property
    def status(self) -> int:
        return 200

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json"}

    @property
    def data(self) -> bytes:
        return self._body


class _CachedCertsRequest(google.auth.transport.Request):
    """A google-auth transport that answers the certificate URL from our cache only."""

    def __init__(self, url: str, body: bytes) -> None:
        self._url = url
        self._body = body

    def __call__(self, url: str, method: str = "GET", *args: Any, **kwargs: Any) -> _Response:
        if url != self._url or method != "GET":
            raise google.auth.exceptions.TransportError("unexpected request")  # type: ignore[no-untyped-call]
        return _Response(self._body)


class CertificateCache:
    """Google's signing certificates, cached per Cache-Control max-age.

    Refetched when stale, or at most once a minute when a token names a kid we do not
    know; the last good set is kept when Google cannot be reached. One fetch runs at a
    time, within a total deadline, and every login that needs it awaits that same fetch.
    With no set at all (Google unreachable since start-up) logins are answered
    SERVICE_UNAVAILABLE: at once while the next attempt is not due, which backs off from
    one second to a minute, so that an outage costs no login more than one deadline.
    """

    def __init__(
        self,
        *,
        url: str,
        fetcher: CertsFetcher,
        clock: Clock,
        deadline: float = DEFAULT_FETCH_DEADLINE,
    ) -> None:
        self.url = url
        self.fetcher = fetcher
        self.clock = clock
        self.deadline = deadline
        self._body: bytes | None = None
        self._kids: frozenset[str] = frozenset()
        self._fresh_until = 0.0
        self._next_attempt = float("-inf")
        self._failures = 0
        self._fetch: asyncio.Task[None] | None = None

    async def certificates(self, kid: str | None) -> bytes:
        now = self.clock.timestamp()
        if self._wants_fetch(kid, now):
            if self._fetch is None and now >= self._next_attempt:
                self._fetch = asyncio.create_task(self._refresh(now))
            if self._fetch is not None:
                # Shielded: a login that gives up must not cancel the others' fetch.
                await asyncio.shield(self._fetch)
        if self._body is None:
            retry_after = math.ceil(max(1.0, self._next_attempt - self.clock.timestamp()))
            raise ServiceUnavailable(GOOGLE_UNAVAILABLE, retry_after=retry_after)
        return self._body

    def _wants_fetch(self, kid: str | None, now: float) -> bool:
        if self._body is None:
            return True
        return now >= self._fresh_until or (kid is not None and kid not in self._kids)

    async def _refresh(self, started: float) -> None:
        try:
            # A total deadline: httpx's timeout bounds each read, and an endpoint that
            # trickles a byte at a time would otherwise hold every login indefinitely.
            async with asyncio.timeout(self.deadline):
                response = await self.fetcher.fetch(self.url)
            if response.status != 200:
                raise ValueError(f"status {response.status}")
            kids = _kids_of(response.body)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the last good set
            self._failed(exc)
            return
        finally:
            self._fetch = None
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        max_age = float(match.group(1)) if match else DEFAULT_MAX_AGE
        self._body = response.body
        self._kids = kids
        self._failures = 0
        self._fresh_until = started + max(max_age, MIN_REFETCH_INTERVAL)
        self._next_attempt = started + MIN_REFETCH_INTERVAL

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        now = self.clock.timestamp()
        if self._body is None:
            # Nothing to serve meanwhile: retry soon, then less and less often.
            # The exponent is capped: a float overflows after a thousand failures.
            doublings = min(self._failures - 1, 16)
            backoff = min(FIRST_RETRY * 2**doublings, MIN_REFETCH_INTERVAL)
        else:
            # The last good set serves meanwhile: retry after the refetch interval.
            backoff = MIN_REFETCH_INTERVAL
        self._next_attempt = now + backoff
        logger.warning(
            "google certificates fetch failed; keeping the last good set"
            if self._body is not None
            else "google certificates fetch failed; no certificates to verify sign-ins",
            extra={
                "event": "google_certs_fetch_failed",
                "reason": exc.__class__.__name__,
                "retry_in": backoff,
            },
        )


def _kids_of(body: bytes) -> frozenset[str]:
    import json

    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if "keys" in document:
        return frozenset(str(k.get("kid")) for k in document["keys"] if isinstance(k, dict))
    return frozenset(str(kid) for kid in document)


class GoogleVerifier:
    def __init__(
        self,
        *,
        client_ids: list[str],
        hosted_domains: list[str],
        certs: CertificateCache,
        clock: Clock,
    ) -> None:
        self.client_ids = list(client_ids)
        self.hosted_domains = {d.lower() for d in hosted_domains}
        self.certs = certs
        self.clock = clock

    async def verify(self, token: str, *, nonce: str | None) -> GoogleIdentity:
        if not self.client_ids:
            # Without an audience google-auth would accept a token minted for anyone.
            raise InvalidGoogleToken("GOOGLE_CLIENT_IDS is not configured")
        if len(token) > MAX_ID_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidGoogleToken("malformed")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise InvalidGoogleToken("unreadable header") from exc
        body = await self.certs.certificates(kid if isinstance(kid, str) else None)
        try:
            claims: dict[str, Any] = dict(
                google_id_token.verify_token(
                    token,
                    _CachedCertsRequest(self.certs.url, body),
                    audience=self.client_ids,
                    certs_url=self.certs.url,
                    clock_skew_in_seconds=5,
                )
            )
        except Exception as exc:  # noqa: BLE001 - every library failure means "not valid"
            raise InvalidGoogleToken(exc.__class__.__name__) from exc
        return self._identity(claims, nonce)

    def _identity(self, claims: dict[str, Any], nonce: str | None) -> GoogleIdentity:
        now = self.clock.timestamp()
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise InvalidGoogleToken("issuer")
        if claims.get("aud") not in self.client_ids:
            raise InvalidGoogleToken("audience")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now - 5:
            raise InvalidGoogleToken("expired")
        if claims.get("email_verified") is not True:
            raise InvalidGoogleToken("email not verified")
        sub = _identifier(claims.get("sub"), max_length=SUB_MAX)
        email = claims.get("email")
        # Lowered before it is measured: lowering can lengthen it ("İ" becomes two).
        email = _identifier(email.lower() if isinstance(email, str) else None, max_length=EMAIL_MAX)
        local_part, _, domain = (email or "").rpartition("@")
        if sub is None or email is None or not (local_part and domain):
            raise InvalidGoogleToken("sub/email")
        if self.hosted_domains and str(claims.get("hd", "")).lower() not in self.hosted_domains:
            raise InvalidGoogleToken("hosted domain")
        # surrogatepass: JSON can carry a lone surrogate, which plain UTF-8 cannot encode.
        if nonce is not None and not hmac.compare_digest(
            str(claims.get("nonce", "")).encode("utf-8", "surrogatepass"),
            nonce.encode("utf-8", "surrogatepass"),
        ):
            raise InvalidGoogleToken("nonce")
        token_id = claims.get("jti")
        if not isinstance(token_id, str) or not token_id:
            # Older tokens carry no jti: the signed (iat, sub) pair is unique enough.
            token_id = f"{sub}:{claims.get('iat')}:{claims.get('nonce', '')}"
        # Stored as a digest: a jti or nonce of any length then fits its column.
        token_id = hashlib.sha256(token_id.encode("utf-8", "surrogatepass")).hexdigest()
        return GoogleIdentity(
            sub=sub,
            email=email,
            name=claims.get("name"),
            picture=claims.get("picture"),
            token_id=token_id,
            expires_at=exp,
        )
