"""The benchmark's data set (10 users, 200 categories) and a real session to call it with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from graphql_api.container import Container
from graphql_api.db.engine import Database
from graphql_api.db.models import Category, User
from graphql_api.records import Role
from graphql_api.services.auth import Client
from graphql_api.services.validation import name_key
from graphql_api.settings import Settings

USERS = 10
CATEGORIES = 200
CLIENT_ID = "bench.apps.googleusercontent.com"
TOKEN_TTL = 3600  # outlives a whole `make bench` run


@dataclass(frozen=True, slots=True)
class Caller:
    """The signed-in user every authenticated workload runs as."""

    user_id: int
    email: str
    token: str


def user_email(number: int) -> str:
    return f"user{number}@bench.example"


def production_settings(database_url: str, keys_file: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "production",
        "database_url": database_url,
        "jwt_keys_file": keys_file,
        "google_client_ids": [CLIENT_ID],
        "access_token_ttl": TOKEN_TTL,
        # The workloads send their documents as free-form queries, like the other servers.
        "trusted_documents": "off",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def seed(db: Database, *, users: int = USERS, categories: int = CATEGORIES) -> list[int]:
    """Insert the users and their categories (owners round-robin); returns the user ids."""
    now = datetime.now(UTC)
    async with db.writer() as session:
        rows = [
            User(
                google_sub=f"bench-{n}",
                email=user_email(n),
                name=f"Bench User {n}",
                role=Role.USER,
                created_at=now,
                updated_at=now,
            )
            for n in range(1, users + 1)
        ]
        session.add_all(rows)
        await session.flush()
        ids = [row.id for row in rows]
        session.add_all(
            Category(
                name=f"Category {n:03d}",
                name_key=name_key(f"Category {n:03d}"),
                description=None,
                owner_id=ids[n % users],
                created_at=now,
                updated_at=now,
            )
            for n in range(categories)
        )
    return ids


async def sign_in(container: Container, *, email: str = user_email(1)) -> Caller:
    """A session row and an access token minted by the service's own codec and key file."""
    signed_in = await container.auth.dev_sign_in(
        email=email, client=Client(ip="127.0.0.1", user_agent="bench")
    )
    return Caller(user_id=signed_in.user.id, email=email, token=signed_in.access.token)
