"""Mutation root: thin resolvers over the auth, user and category services.

Each translates its arguments, calls one service function with the acting user, and maps
the record it gets back. The rules about objects (owner or admin, self or admin, only
admins change roles) are enforced by the services inside their transactions; the guards
here are the coarse gates.
"""

from __future__ import annotations

from typing import Annotated

import strawberry

from graphql_api.api.context import Info
from graphql_api.api.pagination import parse_id
from graphql_api.api.permissions import IsAuthenticated, IsSelfOrAdmin, guard
from graphql_api.api.types import (
    AuthPayload,
    CategoryType,
    CreateCategoryInput,
    UpdateCategoryInput,
    UpdateUserInput,
    UserType,
)
from graphql_api.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from graphql_api.services.auth import SignedIn
from graphql_api.services.categories import CategoryChanges
from graphql_api.services.users import UserChanges

MAX_ID_TOKEN = 8192
SIGNED_IN = "Needs a signed-in caller (UNAUTHENTICATED otherwise)."


def _id(value: str, what: str) -> int:
    parsed = parse_id(value)
    if parsed is None:
        raise NotFound(f"{what} not found.")
    return parsed


def _signed_in(info: Info, signed_in: SignedIn, *, cookie: bool) -> AuthPayload:
    refresh: str | None = signed_in.refresh_token
    if cookie:
        info.context.response.set_refresh_cookie(
            signed_in.refresh_token, signed_in.refresh_expires_in
        )
        refresh = None
    return AuthPayload(
        access_token=signed_in.access.token,
        refresh_token=refresh,
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
        expires_in=signed_in.access.expires_in,
        user=UserType.of(signed_in.user, shown_to_self=True),
    )


def _set(value: object) -> bool:
    return value is not strawberry.UNSET


@strawberry.type(description="Changes. Each says who may call it.")
class Mutation:
    @strawberry.mutation(
        description="Public, rate limited (per client IP and per Google account). Exchanges a "
        "Google ID token for our own tokens; creates the account at the first sign-in."
    )
    async def google_login(
        self,
        info: Info,
        id_token: Annotated[
            str, strawberry.argument(description="The ID token from Google Identity Services.")
        ],
        nonce: Annotated[
            str | None,
            strawberry.argument(description="The nonce the token must carry, if one was used."),
        ] = strawberry.UNSET,
    ) -> AuthPayload:
        nonce = nonce if isinstance(nonce, str) else None
        if len(id_token) > MAX_ID_TOKEN or (nonce is not None and len(nonce) > 512):
            raise BadUserInput("idToken or nonce is too long.")
        ctx = info.context
        signed_in = await ctx.services.auth.google_login(
            id_token=id_token, nonce=nonce, client=ctx.client
        )
        return _signed_in(info, signed_in, cookie=ctx.cookie_transport)

    @strawberry.mutation(
        description="Public, rate limited. Rotates a refresh token: returns new tokens; the "
        "old refresh token is dead, and presenting it again ends the whole session. Without "
        "an argument, uses the refresh cookie (same-origin or CORS_ORIGINS only)."
    )
    async def refresh_token(
        self,
        info: Info,
        refresh_token: Annotated[
            str | None,
            strawberry.argument(description="The refresh token; leave out to use the cookie."),
        ] = strawberry.UNSET,
    ) -> AuthPayload:
        ctx = info.context
        token = refresh_token if isinstance(refresh_token, str) else None
        # The successor of a cookie's token replaces the cookie whatever the header says:
        # in the body it would reach page scripts, and the stale cookie would later look
        # like a theft.
        cookie = ctx.cookie_transport or token is None
        if token is None:
            if ctx.refresh_cookie is None:
                raise Unauthenticated("No refresh token given.")
            if not ctx.origin_trusted:
                raise Forbidden("Cookie refresh is not allowed from this origin.")
            token = ctx.refresh_cookie
        signed_in = await ctx.services.auth.refresh(refresh_token=token, client=ctx.client)
        return _signed_in(info, signed_in, cookie=cookie)

    @strawberry.mutation(
        extensions=[guard(IsAuthenticated())],
        description="Ends the caller's current session (and clears the refresh cookie). "
        + SIGNED_IN,
    )
    async def logout(self, info: Info) -> bool:
        ctx = info.context
        await ctx.services.auth.logout(
            user_id=ctx.require_user(), session_id=ctx.require_session(), client=ctx.client
        )
        ctx.response.clear_refresh_cookie()
        return True

    @strawberry.mutation(
        extensions=[guard(IsAuthenticated())],
        description=f"Ends every session of the caller; returns how many. {SIGNED_IN}",
    )
    async def logout_all(self, info: Info) -> int:
        ctx = info.context
        count = await ctx.services.auth.logout_all(user_id=ctx.require_user(), client=ctx.client)
        ctx.response.clear_refresh_cookie()
        return count

    @strawberry.mutation(
        extensions=[guard(IsAuthenticated())],
        description="Ends one of the caller's own sessions (see `mySessions`); NOT_FOUND for "
        f"any other. {SIGNED_IN}",
    )
    async def revoke_session(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The session's id.")],
    ) -> bool:
        ctx = info.context
        return await ctx.services.auth.revoke_session(
            user_id=ctx.require_user(), session_id=str(id)[:64], client=ctx.client
        )

    @strawberry.mutation(
        extensions=[guard(IsAuthenticated(), IsSelfOrAdmin())],
        description="Changes a profile: the user themself or an ADMIN (FORBIDDEN otherwise); "
        "only an ADMIN changes `role`.",
    )
    async def update_user(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The user's id.")],
        input: Annotated[UpdateUserInput, strawberry.argument(description="What to change.")],
    ) -> UserType:
        changes = UserChanges(
            name=input.name if _set(input.name) else None,
            picture_url=input.picture_url if _set(input.picture_url) else None,
            role=input.role.domain() if _set(input.role) and input.role is not None else None,
            set_name=_set(input.name),
            set_picture_url=_set(input.picture_url),
            set_role=_set(input.role),
        )
        ctx = info.context
        record = await ctx.services.users.update(
            actor_id=ctx.require_user(), user_id=_id(id, "User"), changes=changes
        )
        return UserType.of(record)

    @strawberry.mutation(
        extensions=[guard(IsAuthenticated(), IsSelfOrAdmin())],
        description="Deletes an account, its categories and sessions: the user themself or "
        "an ADMIN. Its tokens stop working at once.",
    )
    async def delete_user(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The user's id.")],
    ) -> bool:
        ctx = info.context
        await ctx.services.users.delete(actor_id=ctx.require_user(), user_id=_id(id, "User"))
        return True

    @strawberry.mutation(
        extensions=[guard(IsAuthenticated())],
        description=f"Creates a category owned by the caller. {SIGNED_IN}",
    )
    async def create_category(
        self,
        info: Info,
        input: Annotated[CreateCategoryInput, strawberry.argument(description="The category.")],
    ) -> CategoryType:
        ctx = info.context
        record = await ctx.services.categories.create(
            actor_id=ctx.require_user(),
            name=input.name,
            description=input.description if isinstance(input.description, str) else None,
        )
        return CategoryType.of(record)

    @strawberry.mutation(
        extensions=[guard(IsAuthenticated())],
        description="Changes a category: its owner or an ADMIN (FORBIDDEN otherwise, "
        "NOT_FOUND if there is none).",
    )
    async def update_category(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The category's id.")],
        input: Annotated[UpdateCategoryInput, strawberry.argument(description="What to change.")],
    ) -> CategoryType:
        changes = CategoryChanges(
            name=input.name if _set(input.name) else None,
            description=input.description if _set(input.description) else None,
            set_name=_set(input.name),
            set_description=_set(input.description),
        )
        ctx = info.context
        record = await ctx.services.categories.update(
            actor_id=ctx.require_user(), category_id=_id(id, "Category"), changes=changes
        )
        return CategoryType.of(record)

    @strawberry.mutation(
        extensions=[guard(IsAuthenticated())],
        description="Deletes a category: its owner or an ADMIN (FORBIDDEN otherwise, "
        "NOT_FOUND if there is none).",
    )
    async def delete_category(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The category's id.")],
    ) -> bool:
        ctx = info.context
        await ctx.services.categories.delete(
            actor_id=ctx.require_user(), category_id=_id(id, "Category")
        )
        return True
