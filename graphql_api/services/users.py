"""User use cases: read, profile changes, role changes, deletion.

Every change takes the acting user's id and decides "self or admin" (and "only admins
change roles") inside the write transaction that makes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from graphql_api.clock import Clock
from graphql_api.db.engine import Database
from graphql_api.errors import BadUserInput, NotFound, Unauthenticated
from graphql_api.observability.recorder import NULL_RECORDER, Recorder
from graphql_api.records import Role, UserRecord
from graphql_api.repositories import categories as categories_repo
from graphql_api.repositories import sessions as sessions_repo
from graphql_api.repositories import users as users_repo
from graphql_api.services.events import CategoryChange, ChangeKind, EventBus, LocalEventBus
from graphql_api.services.policies import require_role_changer, require_user_manager
from graphql_api.services.revocation import RevocationList
from graphql_api.services.validation import clean_name, clean_picture_url

audit = logging.getLogger("graphql_api.audit")


@dataclass(frozen=True, slots=True)
class UserChanges:
    name: str | None = None
    picture_url: str | None = None
    role: Role | None = None
    set_name: bool = False
    set_picture_url: bool = False
    set_role: bool = False


class UserService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        revocations: RevocationList,
        events: EventBus | None = None,
        metrics: Recorder = NULL_RECORDER,
    ) -> None:
        self.db = db
        self.clock = clock
        self.revocations = revocations
        self.events: EventBus = events or LocalEventBus()
        self.metrics = metrics

    # --- reads ------------------------------------------------------------------------

    async def by_ids(self, ids: Sequence[int]) -> list[UserRecord | None]:
        """The users with these ids, in order; None where there is none."""
        async with self.db.reader() as session:
            found = {u.id: u for u in await users_repo.records_by_ids(session=session, ids=ids)}
        return [found.get(i) for i in ids]

    async def page(self, *, after_id: int | None, limit: int) -> list[UserRecord]:
        """Up to ``limit`` users after ``after_id``, by id."""
        async with self.db.reader() as session:
            return await users_repo.page(session=session, after_id=after_id, limit=limit)

    # --- changes ----------------------------------------------------------------------

    async def update(self, *, actor_id: int, user_id: int, changes: UserChanges) -> UserRecord:
        async with self.db.writer() as session:
            actor = await users_repo.get_by_id(session=session, user_id=actor_id)
            if actor is None:
                raise Unauthenticated()
            require_user_manager(actor, user_id)
            if changes.set_role:
                require_role_changer(actor)
            user = (
                actor
                if user_id == actor_id
                else await users_repo.get_by_id(session=session, user_id=user_id, lock=True)
            )
            if user is None:
                raise NotFound("User not found.")
            if changes.set_name:
                if changes.name is None:
                    raise BadUserInput("name cannot be null.", field="name")
                user.name = clean_name(changes.name)
            if changes.set_picture_url:
                user.picture_url = clean_picture_url(changes.picture_url)
            if changes.set_role:
                if changes.role is None:
                    raise BadUserInput("role cannot be null.", field="role")
                if user.role is not changes.role:
                    audit.info(
                        "role changed",
                        extra={
                            "event": "role_change",
                            "user_id": user.id,
                            "actor_id": actor_id,
                            "role": changes.role.value,
                        },
                    )
                user.role = changes.role
            user.updated_at = self.clock.now()
            await session.flush()
            return users_repo.record(user)

    async def set_role(self, *, email: str, role: Role) -> list[UserRecord]:
        """Operator action (the CLI, with shell access): give every account with this email
        the role."""
        async with self.db.writer() as session:
            users = await users_repo.get_by_email(session=session, email=email.lower())
            if not users:
                raise NotFound(f"No user with email {email}.")
            for user in users:
                user.role = role
                user.updated_at = self.clock.now()
            return [users_repo.record(user) for user in users]

    async def delete(self, *, actor_id: int, user_id: int) -> None:
        now = self.clock.now()
        async with self.db.writer() as session:
            actor = await users_repo.get_by_id(session=session, user_id=actor_id)
            if actor is None:
                raise Unauthenticated()
            require_user_manager(actor, user_id)
            if await users_repo.get_by_id(session=session, user_id=user_id, lock=True) is None:
                raise NotFound("User not found.")
            ids = await sessions_repo.ids_for_user(session=session, user_id=user_id)
            # Logged before the rows go, so every process refuses the user's tokens.
            ended = await sessions_repo.revoke(
                session=session, session_ids=ids, user_id=user_id, now=now, reason="user_deleted"
            )
            # Their categories go with them (ON DELETE CASCADE): subscribers hear of each.
            categories = await categories_repo.ids_of_owner(session=session, owner_id=user_id)
            await users_repo.delete_by_id(session=session, user_id=user_id)
        self.metrics.revoked("user_deleted", len(ended))
        self.revocations.add(ended)
        for category_id in categories:
            await self.events.publish(
                CategoryChange(ChangeKind.DELETED, category_id, user_id, None)
            )
        audit.info(
            "user deleted",
            extra={"event": "user_deleted", "user_id": user_id, "actor_id": actor_id},
        )
