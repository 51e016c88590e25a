"""Who is calling: an access token becomes a caller (its user and session), or a refusal.

The token is verified by the codec (signature, claims, times) and its session checked
against the revocation list, on every request and every WebSocket event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graphql_api.auth.tokens import AccessTokenCodec, InvalidToken
from graphql_api.services.revocation import RevocationList

# What development may tell a caller about a refused token (production says nothing).
REFUSAL_HINTS = {
    "malformed": "the Authorization header does not hold a well-formed access token",
    "unknown_key": (
        "the access token was signed by a key this service does not know "
        "(was the development key file regenerated?)"
    ),
    "expired": "the access token has expired",
    "revoked": "the session of this access token has ended (logged out or revoked)",
    "invalid": "the access token is not valid for this service",
}


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    session_id: str
    # When the access token expires (seconds since the epoch): a socket closes then.
    expires_at: int


class TokenRefused(Exception):
    """The token does not authenticate anyone; ``kind`` is a key of ``REFUSAL_HINTS``,
    ``reason`` the detail for logs."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    @property
    def hint(self) -> str:
        return REFUSAL_HINTS.get(self.kind, REFUSAL_HINTS["invalid"])


class Authenticator:
    def __init__(self, *, codec: AccessTokenCodec, revocations: RevocationList) -> None:
        self.codec = codec
        self.revocations = revocations

    async def authenticate(self, token: str) -> Caller:
        try:
            claims = self.codec.decode(token)
        except InvalidToken as exc:
            raise TokenRefused(exc.kind, str(exc)) from None
        if await self.revocations.is_revoked(claims.session_id):
            raise TokenRefused("revoked", "revoked")
        return Caller(claims.user_id, claims.session_id, claims.expires_at)

    def watch(self, caller: Caller, on_end: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_end`` when the caller's session ends, on whichever process ends it
        (within the revocation poll interval); returns the function that stops watching."""
        return self.revocations.watch(caller.session_id, on_end)
