"""Read records: what repositories read and services hand to the API, never ORM rows.

Plain immutable tuples: no identity map, no change tracking, no lazy loading, so the API
cannot change or reload anything by accident, and building a page of 100 costs little.
``Role`` is the domain's enum; the database stores it and the API publishes its own.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import NamedTuple


class Role(enum.Enum):
    USER = "USER"
    ADMIN = "ADMIN"


class UserRecord(NamedTuple):
    id: int
    name: str
    email: str
    picture_url: str | None
    role: Role
    created_at: datetime


class CategoryRecord(NamedTuple):
    id: int
    name: str
    description: str | None
    owner_id: int
    created_at: datetime
    updated_at: datetime


class CategoryPage(NamedTuple):
    """A page of categories (one more row than asked for, if there is a next page) and,
    when asked for, their owners by id."""

    rows: list[CategoryRecord]
    owners: dict[int, UserRecord]


class SessionRecord(NamedTuple):
    id: str
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
