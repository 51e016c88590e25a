"""Who may do what to which object: the object-level rules, in one place.

Services call these inside the write transaction that acts, on rows read in that same
transaction, so no caller (a resolver, the CLI, a job) can skip them or act on a check
that has gone stale. The API's permission classes use the same rules for their coarse
gates and for field visibility.
"""

from __future__ import annotations

from typing import Protocol

from graphql_api.errors import Forbidden
from graphql_api.records import Role

OWNER_OR_ADMIN = "Only the owner or an admin can do this."
SELF_OR_ADMIN = "Only the user themself or an admin can do this."
ADMIN_ONLY = "Only admins can change roles."


class Actor(Protocol):
    """The acting user, as read in the acting transaction (or for the current request)."""

    @property
    def id(self) -> int: ...
    @property
    def role(self) -> Role: ...


def is_admin(actor: Actor) -> bool:
    return actor.role is Role.ADMIN


def may_manage_user(actor: Actor, user_id: int) -> bool:
    """Change or delete the account ``user_id``, or see its email."""
    return actor.id == user_id or is_admin(actor)


def may_manage_owned(actor: Actor, owner_id: int) -> bool:
    """Change or delete an object owned by ``owner_id``."""
    return actor.id == owner_id or is_admin(actor)


def require_user_manager(actor: Actor, user_id: int) -> None:
    if not may_manage_user(actor, user_id):
        raise Forbidden(SELF_OR_ADMIN)


def require_owner_or_admin(actor: Actor, owner_id: int) -> None:
    if not may_manage_owned(actor, owner_id):
        raise Forbidden(OWNER_OR_ADMIN)


def require_role_changer(actor: Actor) -> None:
    if not is_admin(actor):
        raise Forbidden(ADMIN_ONLY)
