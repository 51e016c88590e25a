"""Category use cases: read pages, create, rename, describe, delete, with their rules.

Every change takes the acting user's id and decides "owner or admin" inside the write
transaction that makes it, on the rows that transaction read. Once committed, each change
is published as a category event (``services/events.py``) for subscriptions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from graphql_api.clock import Clock
from graphql_api.db.engine import Database
from graphql_api.db.models import Category
from graphql_api.errors import BadUserInput, NotFound, Unauthenticated
from graphql_api.records import CategoryPage, CategoryRecord
from graphql_api.repositories import categories as categories_repo
from graphql_api.repositories import users as users_repo
from graphql_api.services.events import CategoryChange, ChangeKind, EventBus, LocalEventBus
from graphql_api.services.policies import require_owner_or_admin
from graphql_api.services.validation import clean_description, clean_name, name_key

DUPLICATE = "A category with this name already exists."

# (owner id, after id, how many rows): one owner's page, as the API's loader asks for it.
OwnerPageKey = tuple[int, int | None, int]


@dataclass(frozen=True, slots=True)
class CategoryChanges:
    name: str | None = None
    description: str | None = None
    set_name: bool = False
    set_description: bool = False


class CategoryService:
    def __init__(self, *, db: Database, clock: Clock, events: EventBus | None = None) -> None:
        self.db = db
        self.clock = clock
        self.events: EventBus = events or LocalEventBus()

    # --- reads ------------------------------------------------------------------------

    async def by_ids(self, ids: Sequence[int]) -> list[CategoryRecord | None]:
        """The categories with these ids, in order; None where there is none."""
        async with self.db.reader() as session:
            found = {c.id: c for c in await categories_repo.get_by_ids(session=session, ids=ids)}
        return [found.get(i) for i in ids]

    async def page(
        self, *, after_id: int | None, limit: int, owner_id: int | None, with_owners: bool
    ) -> CategoryPage:
        """Up to ``limit`` + 1 categories after ``after_id`` (the extra one says there is a
        next page), and their owners in one more statement when ``with_owners``."""
        async with self.db.reader() as session:
            rows = await categories_repo.page(
                session=session, after_id=after_id, limit=limit + 1, owner_id=owner_id
            )
            owners = {}
            if with_owners and rows:
                ids = list({row.owner_id for row in rows[:limit]})
                owners = {
                    u.id: u for u in await users_repo.records_by_ids(session=session, ids=ids)
                }
        return CategoryPage(rows, owners)

    async def pages_by_owner(self, keys: Sequence[OwnerPageKey]) -> list[list[CategoryRecord]]:
        """Each owner's page, for many owners at once (one statement per page shape)."""
        groups: dict[tuple[int | None, int], list[int]] = defaultdict(list)
        for owner_id, after_id, limit in keys:
            groups[(after_id, limit)].append(owner_id)
        found: dict[OwnerPageKey, list[CategoryRecord]] = {}
        async with self.db.reader() as session:
            for (after_id, limit), owner_ids in groups.items():
                pages = await categories_repo.pages_by_owner(
                    session=session, owner_ids=owner_ids, after_id=after_id, limit=limit
                )
                for owner_id, rows in pages.items():
                    found[(owner_id, after_id, limit)] = rows
        return [found[key] for key in keys]

    # --- changes ----------------------------------------------------------------------

    async def create(self, *, actor_id: int, name: str, description: str | None) -> CategoryRecord:
        """A category owned by the acting user: no input can name another owner."""
        name = clean_name(name)
        description = clean_description(description)
        key = name_key(name)
        now = self.clock.now()
        try:
            # One statement: the unique index on name_key is the duplicate check, and it
            # holds however many clients race for the same name. It commits by itself.
            async with self.db.statement() as session:
                category_id = await categories_repo.insert_row(
                    session=session,
                    name=name,
                    name_key=key,
                    description=description,
                    owner_id=actor_id,
                    now=now,
                )
        except IntegrityError:
            # The name is taken (or the actor was deleted meanwhile).
            raise BadUserInput(DUPLICATE, field="name") from None
        record = CategoryRecord(category_id, name, description, actor_id, now, now)
        await self.events.publish(CategoryChange(ChangeKind.CREATED, record.id, actor_id, record))
        return record

    async def update(
        self, *, actor_id: int, category_id: int, changes: CategoryChanges
    ) -> CategoryRecord:
        try:
            async with self.db.writer() as session:
                category = await self._owned(session, actor_id, category_id)
                if changes.set_name:
                    if changes.name is None:
                        raise BadUserInput("name cannot be null.", field="name")
                    name = clean_name(changes.name)
                    # A name taken by another category breaks the unique index at flush.
                    category.name, category.name_key = name, name_key(name)
                if changes.set_description:
                    category.description = clean_description(changes.description)
                category.updated_at = self.clock.now()
                await session.flush()
        except IntegrityError:
            raise BadUserInput(DUPLICATE, field="name") from None
        record = categories_repo.record(category)
        await self.events.publish(
            CategoryChange(ChangeKind.UPDATED, record.id, record.owner_id, record)
        )
        return record

    async def delete(self, *, actor_id: int, category_id: int) -> None:
        async with self.db.writer() as session:
            category = await self._owned(session, actor_id, category_id)
            owner_id = category.owner_id
            await categories_repo.delete_by_id(session=session, category_id=category_id)
        await self.events.publish(CategoryChange(ChangeKind.DELETED, category_id, owner_id, None))

    @staticmethod
    async def _owned(session: AsyncSession, actor_id: int, category_id: int) -> Category:
        """The category, locked, if the actor is its owner or an admin (in this transaction)."""
        category = await categories_repo.get_by_id(
            session=session, category_id=category_id, lock=True
        )
        if category is None:
            raise NotFound("Category not found.")
        actor = await users_repo.get_by_id(session=session, user_id=actor_id)
        if actor is None:
            raise Unauthenticated()
        require_owner_or_admin(actor, category.owner_id)
        return category
