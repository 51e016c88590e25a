"""Mutation root: thin resolvers over the auth, user and category services."""

from __future__ import annotations

import strawberry

from graphql_api.api.context import CookieChange, Info
from graphql_api.api.pagination import parse_id
from graphql_api.api.permissions import IsAuthenticated, IsOwnerOrAdmin, IsSelfOrAdmin, guard
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


def _id(value: str, what: str) -> int:
    parsed = parse_id(value)
    if parsed is None:
        raise NotFound(f"{what} not found.")
    return parsed


def _signed_in(info: Info, signed_in: SignedIn) -> AuthPayload:
    ctx = info.context
    ctx.signed_in_user_ids.add(signed_in.user.id)
    refresh: str | None = signed_in.refresh_token
    if ctx.cookie_transport:
        ttl = ctx.container.settings.refresh_token_ttl
        ctx.cookie_changes.append(CookieChange(signed_in.refresh_token, ttl))
        refresh = None
    return AuthPayload(
        access_token=signed_in.access.token,
        refresh_token=refresh,
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
        expires_in=signed_in.access.expires_in,
        user=UserType.of(signed_in.user),
    )


def _set(value: object) -> bool:
    return value is not strawberry.UNSET


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Public, rate limited. Exchanges a Google ID token.")
    async def google_login(
        self, info: Info, id_token: str, nonce: str | None = strawberry.UNSET
    ) -> AuthPayload:
        nonce = nonce if isinstance(nonce, str) else None
        if len(id_token) > MAX_ID_TOKEN or (nonce is not None and len(nonce) > 512):
            raise BadUserInput("idToken or nonce is too long.")
        ctx = info.context
        signed_in = await ctx.container.auth.google_login(
            id_token=id_token, nonce=nonce, client=ctx.client
        )
        return _signed_in(info, signed_in)

    @strawberry.mutation(description="Public. Rotates a refresh token; falls back to the cookie.")
    async def refresh_token(
        self, info: Info, refresh_token: str | None = strawberry.UNSET
    ) -> AuthPayload:
        ctx = info.context
        token = refresh_token if isinstance(refresh_token, str) else None
        if token is None:
            if ctx.refresh_cookie is None:
                raise Unauthenticated("No refresh token given.")
            if not ctx.origin_trusted:
                raise Forbidden("Cookie refresh is not allowed from this origin.")
            token = ctx.refresh_cookie
            # The successor replaces the cookie whatever the header says: in the body it
            # would reach page scripts, and the stale cookie would later look like a theft.
            ctx.cookie_transport = True
        signed_in = await ctx.container.auth.refresh(refresh_token=token, client=ctx.client)
        return _signed_in(info, signed_in)

    @strawberry.mutation(extensions=[guard(IsAuthenticated())])
    async def logout(self, info: Info) -> bool:
        ctx = info.context
        await ctx.container.auth.logout(
            user_id=ctx.require_user(), session_id=ctx.require_session(), client=ctx.client
        )
        ctx.cookie_changes.append(CookieChange(None))
        return True

    @strawberry.mutation(extensions=[guard(IsAuthenticated())])
    async def logout_all(self, info: Info) -> int:
        ctx = info.context
        user_id = ctx.require_user()
        count = await ctx.container.auth.logout_all(user_id=user_id, client=ctx.client)
        ctx.cookie_changes.append(CookieChange(None))
        return count

    @strawberry.mutation(extensions=[guard(IsAuthenticated())])
    async def revoke_session(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        user_id = ctx.require_user()
        return await ctx.container.auth.revoke_session(
            user_id=user_id, session_id=str(id)[:64], client=ctx.client
        )

    @strawberry.mutation(extensions=[guard(IsAuthenticated(), IsSelfOrAdmin())])
    async def update_user(self, info: Info, id: strawberry.ID, input: UpdateUserInput) -> UserType:
        actor = await info.context.viewer()
        if actor is None:
            raise Unauthenticated()
        changes = UserChanges(
            name=input.name if _set(input.name) else None,
            picture_url=input.picture_url if _set(input.picture_url) else None,
            role=input.role if _set(input.role) else None,
            set_name=_set(input.name),
            set_picture_url=_set(input.picture_url),
            set_role=_set(input.role),
        )
        user = await info.context.container.users.update(
            actor=actor, user_id=_id(id, "User"), changes=changes
        )
        return UserType.of(user)

    @strawberry.mutation(extensions=[guard(IsAuthenticated(), IsSelfOrAdmin())])
    async def delete_user(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        user_id = ctx.require_user()
        await ctx.container.users.delete(actor_id=user_id, user_id=_id(id, "User"))
        return True

    @strawberry.mutation(extensions=[guard(IsAuthenticated())])
    async def create_category(self, info: Info, input: CreateCategoryInput) -> CategoryType:
        ctx = info.context
        user_id = ctx.require_user()
        row = await ctx.container.categories.create(
            owner_id=user_id,
            name=input.name,
            description=input.description if isinstance(input.description, str) else None,
        )
        return CategoryType.of(row)

    @strawberry.mutation(extensions=[guard(IsAuthenticated(), IsOwnerOrAdmin())])
    async def update_category(
        self, info: Info, id: strawberry.ID, input: UpdateCategoryInput
    ) -> CategoryType:
        changes = CategoryChanges(
            name=input.name if _set(input.name) else None,
            description=input.description if _set(input.description) else None,
            set_name=_set(input.name),
            set_description=_set(input.description),
        )
        row = await info.context.container.categories.update(
            category_id=_id(id, "Category"), changes=changes
        )
        return CategoryType.of(row)

    @strawberry.mutation(extensions=[guard(IsAuthenticated(), IsOwnerOrAdmin())])
    async def delete_category(self, info: Info, id: strawberry.ID) -> bool:
        await info.context.container.categories.delete(category_id=_id(id, "Category"))
        return True
