"""Per-request DataLoaders over the services: one SQL statement per batch, not per item."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strawberry.dataloader import DataLoader

from graphql_api.records import CategoryRecord, UserRecord
from graphql_api.services.categories import OwnerPageKey

if TYPE_CHECKING:
    from graphql_api.api.context import Services


class Loaders:
    def __init__(self, services: Services) -> None:
        self.user_by_id = DataLoader[int, UserRecord | None](services.users.by_ids)
        self.category_by_id = DataLoader[int, CategoryRecord | None](services.categories.by_ids)
        self.categories_by_owner = DataLoader[OwnerPageKey, list[CategoryRecord]](
            services.categories.pages_by_owner
        )
