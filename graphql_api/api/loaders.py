"""Per-request DataLoaders: one SQL statement per batch instead of one per item."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from graphql_api.db.engine import Database
from graphql_api.db.models import User
from graphql_api.repositories import categories as categories_repo
from graphql_api.repositories import users as users_repo
from graphql_api.repositories.categories import CategoryRecord

# (owner id, after id, how many rows)
OwnerPageKey = tuple[int, int | None, int]


class Loaders:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.user_by_id = DataLoader[int, User | None](self._users)
        self.category_by_id = DataLoader[int, CategoryRecord | None](self._categories)
        self.categories_by_owner = DataLoader[OwnerPageKey, list[CategoryRecord]](self._owner_pages)

    async def _users(self, ids: Sequence[int]) -> list[User | None]:
        async with self.db.reader() as session:
            rows = {u.id: u for u in await users_repo.get_by_ids(session=session, ids=ids)}
        return [rows.get(i) for i in ids]

    async def _categories(self, ids: Sequence[int]) -> list[CategoryRecord | None]:
        async with self.db.reader() as session:
            rows = {c.id: c for c in await categories_repo.get_by_ids(session=session, ids=ids)}
        return [rows.get(i) for i in ids]

    async def _owner_pages(self, keys: Sequence[OwnerPageKey]) -> list[list[CategoryRecord]]:
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
