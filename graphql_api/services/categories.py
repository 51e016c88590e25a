"""Category use cases: create, rename, describe, delete, with their rules."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from graphql_api.clock import Clock
from graphql_api.db.engine import Database
from graphql_api.db.models import Category
from graphql_api.errors import BadUserInput, NotFound
from graphql_api.repositories import categories as categories_repo
from graphql_api.services.validation import clean_description, clean_name, name_key

DUPLICATE = "A category with this name already exists."


@dataclass(frozen=True, slots=True)
class CategoryChanges:
    name: str | None = None
    description: str | None = None
    set_name: bool = False
    set_description: bool = False


class CategoryService:
    def __init__(self, *, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(self, *, owner_id: int, name: str, description: str | None) -> Category:
        name = clean_name(name)
        description = clean_description(description)
        key = name_key(name)
        now = self.clock.now()
        try:
            async with self.db.writer() as session:
                if await categories_repo.name_taken(session=session, name_key=key):
                    raise BadUserInput(DUPLICATE, field="name")
                category = Category(
                    name=name,
                    name_key=key,
                    description=description,
                    owner_id=owner_id,
                    created_at=now,
                    updated_at=now,
                )
                session.add(category)
                await session.flush()
        except IntegrityError:
            # Two clients raced for the same name: the loser gets the same answer.
            raise BadUserInput(DUPLICATE, field="name") from None
        return category

    async def update(self, *, category_id: int, changes: CategoryChanges) -> Category:
        try:
            async with self.db.writer() as session:
                category = await categories_repo.get_by_id(session=session, category_id=category_id)
                if category is None:
                    raise NotFound("Category not found.")
                if changes.set_name:
                    if changes.name is None:
                        raise BadUserInput("name cannot be null.", field="name")
                    name = clean_name(changes.name)
                    key = name_key(name)
                    if await categories_repo.name_taken(
                        session=session, name_key=key, except_id=category_id
                    ):
                        raise BadUserInput(DUPLICATE, field="name")
                    category.name, category.name_key = name, key
                if changes.set_description:
                    category.description = clean_description(changes.description)
                category.updated_at = self.clock.now()
                await session.flush()
        except IntegrityError:
            raise BadUserInput(DUPLICATE, field="name") from None
        return category

    async def delete(self, *, category_id: int) -> None:
        async with self.db.writer() as session:
            if not await categories_repo.delete_by_id(session=session, category_id=category_id):
                raise NotFound("Category not found.")
