"""Permission classes guarding fields: the coarse gates and field visibility.

One small class per rule, composable with ``AnyOf``. ``IsAuthenticated`` raises
UNAUTHENTICATED; every other class answers yes or no and a "no" becomes FORBIDDEN (or a
silent null where the field says so). Put ``IsAuthenticated`` first so that anonymous
callers learn they must sign in.

Rules about a stored object ("owner or admin" for a category) are not decided here, on
a read made before the change, but by the service, inside the transaction that makes the
change (``services/policies.py``); the gates here use the same rules.
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission, PermissionExtension

from graphql_api.api.context import Info
from graphql_api.api.pagination import parse_id
from graphql_api.errors import Forbidden
from graphql_api.services.policies import SELF_OR_ADMIN, is_admin


class _Permission(BasePermission):
    message = "You are not allowed to do this."

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


class IsAuthenticated(_Permission):
    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if info.context.caller is None:
            raise info.context.unauthenticated()
        return True


class IsAdmin(_Permission):
    message = "Only admins can do this."

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        viewer = await info.context.viewer()
        return viewer is not None and is_admin(viewer)


class IsSelf(_Permission):
    """The target user (the ``id`` argument, else the User being resolved) is the caller,
    or the User is the account the caller has just signed in to (``shown_to_self``)."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if "id" not in kwargs and getattr(source, "shown_to_self", False):
            return True
        target = parse_id(kwargs["id"]) if "id" in kwargs else getattr(source, "pk", None)
        return target is not None and target == info.context.user_id


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
    message = SELF_OR_ADMIN
    members = (IsSelf(), IsAdmin())


def guard(*permissions: BasePermission, silent: bool = False) -> PermissionExtension:
    """All of ``permissions`` must pass; ``silent`` answers null instead of an error."""
    return PermissionExtension(list(permissions), use_directives=False, fail_silently=silent)
