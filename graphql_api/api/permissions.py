"""Permission classes guarding fields: one small class per rule, composable with ``AnyOf``.

``IsAuthenticated`` raises UNAUTHENTICATED; every other class answers yes or no and a
"no" becomes FORBIDDEN (or a silent null where the field says so). Put
``IsAuthenticated`` first so that anonymous callers learn they must sign in.
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission, PermissionExtension

from graphql_api.api.context import Info
from graphql_api.api.pagination import parse_id
from graphql_api.db.models import Role
from graphql_api.errors import Forbidden, NotFound, Unauthenticated


class _Permission(BasePermission):
    message = "You are not allowed to do this."

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


class IsAuthenticated(_Permission):
    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if info.context.user_id is None:
            raise Unauthenticated()
        return True


class IsAdmin(_Permission):
    message = "Only admins can do this."

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        viewer = await info.context.viewer()
        return viewer is not None and viewer.role is Role.ADMIN


class IsSelf(_Permission):
    """The target user (the ``id`` argument, else the User being resolved) is the caller."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        ctx = info.context
        target = parse_id(kwargs["id"]) if "id" in kwargs else getattr(source, "pk", None)
        if target is None:
            return False
        return target == ctx.user_id or target in ctx.signed_in_user_ids


class IsOwner(_Permission):
    """The category named by the ``id`` argument belongs to the caller; NOT_FOUND if absent."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        category_id = parse_id(kwargs["id"])
        category = (
            await info.context.loaders.category_by_id.load(category_id)
            if category_id is not None
            else None
        )
        if category is None:
            raise NotFound("Category not found.")
        return category.owner_id == info.context.user_id


class AnyOf(_Permission):
    """Passes when any member passes (Strawberry's own list of permissions means all)."""

    members: tuple[BasePermission, ...] = ()

    def __init__(self, *members: BasePermission) -> None:
        if members:
            self.members = members

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        for member in self.members:
            result = member.has_permission(source, info, **kwargs)
            if not isinstance(result, bool):
                result = await result
            if result:
                return True
        return False


class IsSelfOrAdmin(AnyOf):
    message = "Only the user themself or an admin can do this."
    members = (IsSelf(), IsAdmin())


class IsOwnerOrAdmin(AnyOf):
    message = "Only the owner or an admin can do this."
    # Owner first: it raises NOT_FOUND for a missing category before the admin check.
    members = (IsOwner(), IsAdmin())


def guard(*permissions: BasePermission, silent: bool = False) -> PermissionExtension:
    """All of ``permissions`` must pass; ``silent`` answers null instead of an error."""
    return PermissionExtension(list(permissions), use_directives=False, fail_silently=silent)
