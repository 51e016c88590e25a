"""The bearer-token check every comparison server makes: PyJWT, the service's key and rules."""

from __future__ import annotations

from pathlib import Path

import jwt

from graphql_api.auth.keys import load_key_set


class TokenDecoder:
    """The blog post's JWT check: PyJWT, one public key (the service's current one, with
    its one algorithm), audience and issuer. No session lookup: that is ours' extra work."""

    def __init__(
        self, keys_file: Path, *, issuer: str = "graphql-api", audience: str = "graphql-api"
    ) -> None:
        key = load_key_set(keys_file).current
        self.key = key.verifying_key
        self.algorithms = [key.algorithm]
        self.issuer = issuer
        self.audience = audience

    def user_id(self, token: str) -> int | None:
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
            )
        except jwt.PyJWTError:
            return None
        return int(claims["sub"])
