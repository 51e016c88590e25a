"""The context getter: where the caller becomes a user.

A transport (HTTP, WebSocket) gathers a request's facts (``RequestFacts``: the
authorization header, the refresh cookie, the transport header, the origin, the client
address, the request id) and nothing more; ``ContextGetter`` turns them into a complete
``Context``: the Bearer token decoded and its session checked (``info.context.user_id``),
the origin judged, the services resolvers may call. The context does not change after
that, except for ``response``, where a resolver asks for something to happen to the
response (a refresh cookie set or cleared).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import strawberry

from graphql_api.api.loaders import Loaders
from graphql_api.errors import Unauthenticated
from graphql_api.services.auth import Client
from graphql_api.services.authentication import Authenticator, Caller, TokenRefused

if TYPE_CHECKING:
    from graphql_api.records import UserRecord
    from graphql_api.services.auth import AuthService
    from graphql_api.services.categories import CategoryService
    from graphql_api.services.events import EventBus
    from graphql_api.services.users import UserService

logger = logging.getLogger("graphql_api.auth")


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a transport knows about a request before anyone interprets it."""

    request_id: str
    client_ip: str
    user_agent: str | None = None
    authorization: str | None = None
    # HTTP only: sockets are never authenticated by cookie.
    refresh_cookie: str | None = None
    cookie_transport: bool = False  # X-Refresh-Token-Transport: cookie
    origin: str | None = None
    # The origin the request was addressed to (scheme and Host), for "same origin".
    addressed_origin: str | None = None


@dataclass(frozen=True, slots=True)
class Services:
    """What resolvers may call: one service per domain, nothing else of the container."""

    auth: AuthService
    users: UserService
    categories: CategoryService
    events: EventBus


@dataclass(frozen=True, slots=True)
class CookieChange:
    """A refresh-token cookie to set (``value``) or clear (``None``) on the response."""

    value: str | None
    max_age: int = 0


@dataclass(slots=True)
class ResponseActions:
    """What resolvers ask of the response; the transport carries it out."""

    refresh_cookie: CookieChange | None = None

    def set_refresh_cookie(self, token: str, max_age: int) -> None:
        self.refresh_cookie = CookieChange(token, max_age)

    def clear_refresh_cookie(self) -> None:
        self.refresh_cookie = CookieChange(None)


@dataclass(frozen=True, eq=False)
class Context:
    services: Services
    client: Client
    request_id: str
    caller: Caller | None = None
    # Why a presented token was refused (shown to the caller in development only).
    refusal: TokenRefused | None = None
    development: bool = False
    cookie_transport: bool = False
    refresh_cookie: str | None = None
    # False when a cookie-carried refresh would come from a foreign origin.
    origin_trusted: bool = True
    response: ResponseActions = field(default_factory=ResponseActions)
    # Long-lived connections: watch the caller's session (returns "stop watching"), and
    # what to do when a subscriber falls too far behind (the socket closes).
    watch_session: Callable[[Callable[[], None]], Callable[[], None]] | None = None
    on_overflow: Callable[[], None] | None = None

    @property
    def user_id(self) -> int | None:
        return self.caller.user_id if self.caller is not None else None

    @property
    def session_id(self) -> str | None:
        return self.caller.session_id if self.caller is not None else None

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.services)

    def renewed(self) -> Context:
        """The same caller with fresh loaders: the engine's retry after a plan attempt."""
        return replace(self)

    def next_event(self) -> None:
        """A subscription's next event starts with fresh loaders: what it reads (the
        viewer's role, the owner) is as of that event, not of the connection's start."""
        self.__dict__.pop("loaders", None)

    def unauthenticated(self) -> Unauthenticated:
        """The error for a field that needs a signed-in caller; in development it says
        what was wrong with the token, so a GraphiQL user knows to fetch a new one."""
        if self.development and self.refusal is not None:
            return Unauthenticated(f"Authentication required: {self.refusal.hint}.")
        return Unauthenticated()

    def require_user(self) -> int:
        """The caller's user id; the field's IsAuthenticated guard has already run."""
        if self.caller is None:
            raise self.unauthenticated()
        return self.caller.user_id

    def require_session(self) -> str:
        if self.caller is None:
            raise self.unauthenticated()
        return self.caller.session_id

    async def viewer(self) -> UserRecord | None:
        if self.caller is None:
            return None
        return await self.loaders.user_by_id.load(self.caller.user_id)


Info = strawberry.Info[Context, None]


class ContextGetter:
    """Builds the complete context of a request from its facts (HTTP and WebSocket)."""

    def __init__(
        self,
        *,
        services: Services,
        authenticator: Authenticator,
        trusted_origins: Sequence[str] = (),
        public_origin: str | None = None,
        development: bool = False,
    ) -> None:
        self.services = services
        self.authenticator = authenticator
        self.trusted_origins = frozenset(trusted_origins)
        self.public_origin = public_origin
        self.development = development

    async def __call__(self, facts: RequestFacts) -> Context:
        caller, refusal = await self._authenticate(facts)
        watch = None
        if caller is not None:
            authenticator = self.authenticator

            def watch(on_end: Callable[[], None], caller: Caller = caller) -> Callable[[], None]:
                return authenticator.watch(caller, on_end)

        return Context(
            services=self.services,
            client=Client(ip=facts.client_ip, user_agent=facts.user_agent or None),
            request_id=facts.request_id,
            caller=caller,
            refusal=refusal,
            development=self.development,
            cookie_transport=facts.cookie_transport,
            refresh_cookie=facts.refresh_cookie,
            origin_trusted=self._origin_trusted(facts),
            watch_session=watch,
        )

    async def _authenticate(self, facts: RequestFacts) -> tuple[Caller | None, TokenRefused | None]:
        token = bearer_token(facts.authorization)
        if token is None:
            return None, None
        try:
            return await self.authenticator.authenticate(token), None
        except TokenRefused as refused:
            logger.info(
                "access token refused",
                extra={
                    "event": "token_refused",
                    "reason": refused.reason,
                    "request_id": facts.request_id,
                },
            )
            return None, refused

    def _origin_trusted(self, facts: RequestFacts) -> bool:
        if facts.origin is None:
            # Browsers send Origin on every cross-origin POST; no Origin is not a browser CSRF.
            return True
        if facts.origin in self.trusted_origins:
            return True
        return facts.origin == (self.public_origin or facts.addressed_origin)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for anything else."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
