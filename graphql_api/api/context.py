"""The per-request context: who is calling (from the Bearer token) and per-request loaders."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import strawberry

from graphql_api.api.loaders import Loaders
from graphql_api.errors import Unauthenticated
from graphql_api.services.auth import Client

if TYPE_CHECKING:
    from graphql_api.container import Container
    from graphql_api.db.models import User


@dataclass(frozen=True, slots=True)
class CookieChange:
    """A refresh-token cookie to set (``value``) or clear (``None``) on the response."""

    value: str | None
    max_age: int = 0


@dataclass(eq=False)
class Context:
    container: Container
    client: Client
    request_id: str
    user_id: int | None = None
    session_id: str | None = None
    # Transport for the refresh token in this request (header X-Refresh-Token-Transport).
    cookie_transport: bool = False
    refresh_cookie: str | None = None
    # False when a cookie-carried refresh would come from a foreign origin.
    origin_trusted: bool = True
    cookie_changes: list[CookieChange] = field(default_factory=list)
    # Users who signed in within this very request: they may see their own email.
    signed_in_user_ids: set[int] = field(default_factory=set)

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.container.db)

    def renewed(self) -> Context:
        """The same caller with fresh loaders: the engine's retry after a plan attempt."""
        return replace(self)

    def require_user(self) -> int:
        """The caller's user id; the field's IsAuthenticated guard has already run."""
        if self.user_id is None:
            raise Unauthenticated()
        return self.user_id

    def require_session(self) -> str:
        if self.session_id is None:
            raise Unauthenticated()
        return self.session_id

    async def viewer(self) -> User | None:
        if self.user_id is None:
            return None
        return await self.loaders.user_by_id.load(self.user_id)


Info = strawberry.Info[Context, None]
