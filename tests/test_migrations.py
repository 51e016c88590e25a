"""Migrations over existing data: 0002 rekeys the rows that 0001 stored, on both databases."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from graphql_api.clock import SystemClock
from graphql_api.db.engine import Database
from graphql_api.db.migrate import migrate
from graphql_api.db.models import Base, Category, UsedGoogleToken, User
from graphql_api.errors import BadUserInput
from graphql_api.records import Role
from graphql_api.repositories import sessions as sessions_repo
from graphql_api.services.categories import CategoryService
from graphql_api.services.validation import name_key
from tests.conftest import migrated_pg_database

pytestmark = pytest.mark.both_databases

# Folds to 396 characters: about the longest key that 0001's 400-character column held.
LONG_NAME = "\ufdfa" * 22
NAMES = ("Books", "Straße", LONG_NAME)
# A token without a jti was keyed by its nonce, however long.
TOKEN_IDS = ("jti-from-google", "sub-1:1700000000:" + "n" * 400)


def key_of_0001(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


@pytest.fixture(params=["sqlite", "postgresql"])
async def url_at_0001(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/at-0001.db"
        await migrate(url, "0001")
        yield url
        return
    async with migrated_pg_database("0001") as url:
        yield url


@pytest.fixture
async def upgraded(url_at_0001: str) -> AsyncIterator[Database]:
    """A database with rows written as revision 0001's code wrote them, then upgraded."""
    db = Database(url_at_0001, pool_size=2)
    now = datetime.now(UTC)
    async with db.writer() as session:
        owner = User(
            google_sub="sub-1",
            email="a@example.com",
            name="A",
            role=Role.USER,
            created_at=now,
            updated_at=now,
        )
        session.add(owner)
        await session.flush()
        for name in NAMES:
            session.add(
                Category(
                    name=name,
                    name_key=key_of_0001(name),
                    owner_id=owner.id,
                    created_at=now,
                    updated_at=now,
                )
            )
        for token_id in TOKEN_IDS:
            session.add(UsedGoogleToken(token_id=token_id, expires_at=now + timedelta(hours=1)))
    await db.dispose()
    await migrate(url_at_0001)
    db = Database(url_at_0001, pool_size=2)
    yield db
    await db.dispose()


async def test_category_keys_become_digests_of_their_folded_names(upgraded: Database) -> None:
    async with upgraded.reader() as session:
        rows = (await session.execute(select(Category.name, Category.name_key))).all()
    assert sorted(rows) == sorted((name, name_key(name)) for name in NAMES)


async def test_names_taken_before_the_upgrade_stay_taken(upgraded: Database) -> None:
    categories = CategoryService(db=upgraded, clock=SystemClock())
    async with upgraded.reader() as session:
        owner_id = (await session.execute(select(User.id))).scalar_one()
    for taken in ("BOOKS", "STRASSE", LONG_NAME):
        with pytest.raises(BadUserInput):
            await categories.create(actor_id=owner_id, name=taken, description=None)
    # One more U+FDFA outgrew 0001's column on PostgreSQL; it fits now.
    created = await categories.create(
        actor_id=owner_id, name=LONG_NAME + "\ufdfa", description=None
    )
    assert created.name == LONG_NAME + "\ufdfa"


async def test_the_key_column_is_still_unique(upgraded: Database) -> None:
    with pytest.raises(IntegrityError):
        async with upgraded.writer() as session:
            await session.execute(
                text("UPDATE categories SET name_key = :key"), {"key": name_key("Books")}
            )


async def test_google_tokens_used_before_the_upgrade_stay_used(upgraded: Database) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    for token_id in TOKEN_IDS:
        digest = hashlib.sha256(token_id.encode()).hexdigest()
        async with upgraded.writer() as session:
            fresh = await sessions_repo.remember_google_token(
                session=session, token_id=digest, expires_at=expires
            )
        assert fresh is False, token_id


async def test_the_upgraded_schema_is_the_models_schema(upgraded: Database) -> None:
    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with upgraded.write_engine.connect() as connection:
        assert await connection.run_sync(differences) == []
