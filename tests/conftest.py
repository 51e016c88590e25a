"""Shared fixtures: a database per backend, the fake Google issuer, and one client per identity.

Tests run on SQLite. Where persistence or concurrency matters (what is stored, what a
refused change leaves behind, locks and races), a module says
``pytestmark = pytest.mark.both_databases`` and its tests run twice: on SQLite and on a
throwaway PostgreSQL database (created for the run, dropped after). Without PostgreSQL
the PostgreSQL half is skipped locally, and fails under CI=true.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from graphql_api.app import create_app
from graphql_api.auth.keys import KeySet, generate_key_file, load_key_set
from graphql_api.container import Container
from graphql_api.db.migrate import migrate
from graphql_api.db.models import Base
from graphql_api.settings import Settings
from tests.fake_google import CLIENT_ID, FakeGoogle

PG_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
ADMIN_EMAIL = "admin@example.com"


class FakeClock:
    """Starts at the real time; tests move it forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.held: float | None = None

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def monotonic(self) -> float:
        return (time.monotonic() if self.held is None else self.held) + self.offset

    def hold_monotonic(self) -> None:
        """Stop the monotonic clock (``advance`` still moves it): nothing periodic, such
        as a re-read of the revocation log, comes due while a test looks."""
        self.held = time.monotonic()

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def _create_pg_database() -> tuple[str, str]:
    import asyncpg

    name = f"graphql_api_test_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return name, f"{base}/{name}"


async def _drop_pg_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("postgres_only"):
        backends = ["postgresql"]
    elif metafunc.definition.get_closest_marker("both_databases"):
        backends = ["sqlite", "postgresql"]
    else:
        backends = ["sqlite"]
    metafunc.parametrize("database_url", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/test.db"
            await migrate(url)
            yield url
        return
    async with migrated_pg_database() as url:
        yield url


@asynccontextmanager
async def migrated_pg_database(revision: str = "head") -> AsyncIterator[str]:
    """A throwaway PostgreSQL database at the latest migration, dropped afterwards."""
    name, url = await _create_pg_database()
    try:
        await migrate(url, revision)
        yield url
    finally:
        await _drop_pg_database(name)


@pytest.fixture(scope="session")
def fake_google() -> Iterator[FakeGoogle]:
    google = FakeGoogle().start()
    yield google
    google.stop()


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    generate_key_file(path)
    return path


@pytest.fixture(scope="session")
def keys(keys_file: Path) -> KeySet:
    return load_key_set(keys_file)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_settings(database_url: str, fake_google: FakeGoogle, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "development",
        "database_url": database_url,
        "google_client_ids": [CLIENT_ID],
        "google_certs_url": fake_google.jwks_url,
        "admin_emails": [ADMIN_EMAIL],
        "login_rate_limit": "1000/minute",
        "refresh_rate_limit": "1000/minute",
        "db_pool_size": 5,
        # The fake Google answers at once, but a busy machine can hold a fetch past the
        # default 3 s; the tests of Google's deadline set their own.
        "google_certs_timeout": 15.0,
        # A plan that fails in a way the plan machinery did not expect fails the test.
        "engine_strict": True,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the settings of ``app``."""
    return {}


@pytest.fixture
def settings(
    database_url: str, fake_google: FakeGoogle, settings_overrides: dict[str, Any]
) -> Settings:
    return make_settings(database_url, fake_google, **settings_overrides)


async def _empty_tables(container: Container) -> None:
    async with container.db.writer() as session:
        if container.db.is_sqlite:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(table.delete())
        else:
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            await session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def container(settings: Settings, clock: FakeClock, keys: KeySet) -> AsyncIterator[Container]:
    container = Container(settings, clock=clock, keys=keys)
    await _empty_tables(container)
    yield container
    await container.close()


@pytest.fixture
async def app(container: Container) -> AsyncIterator[Any]:
    application = create_app(container=container)
    async with application.lifespan():
        yield application


@dataclass
class GraphQLClient:
    """One identity talking to the app over HTTP (in-process ASGI)."""

    http: httpx.AsyncClient
    token: str | None = None
    refresh: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = dict(self.headers)
        if self.token:
            all_headers["authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=all_headers
        )

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await self.post(query, variables, headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of a query that must succeed."""
        body = await self.gql(query, variables)
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]
        return result


LOGIN = """
mutation Login($idToken: String!, $nonce: String) {
  googleLogin(idToken: $idToken, nonce: $nonce) {
    accessToken refreshToken tokenType expiresIn
    user { id name email role }
  }
}
"""


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def anonymous(http: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(http)


AppClient = Callable[..., Awaitable[GraphQLClient]]


@pytest.fixture
async def app_client(
    container: Container, database_url: str, fake_google: FakeGoogle, clock: FakeClock, keys: KeySet
) -> AsyncIterator[AppClient]:
    """``await app_client(**settings)`` -> an anonymous client of another app instance
    (another process, as far as the app can tell) with those settings, on the same
    (emptied) database as ``container``; ``limiter=`` hands in a rate limiter."""
    stack = AsyncExitStack()

    async def _make(**overrides: Any) -> GraphQLClient:
        url = overrides.pop("database_url", database_url)
        limiter = overrides.pop("limiter", None)
        other = Container(
            make_settings(url, fake_google, **overrides), clock=clock, keys=keys, limiter=limiter
        )
        application = create_app(container=other)
        await stack.enter_async_context(application.lifespan())
        transport = httpx.ASGITransport(app=application)
        http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        await stack.enter_async_context(http)
        return GraphQLClient(http)

    yield _make
    await stack.aclose()


@pytest.fixture
async def sign_in(app: Any, fake_google: FakeGoogle) -> AsyncIterator[Any]:
    """``await sign_in(email, sub)`` -> a GraphQLClient signed in through googleLogin."""

    async def _sign_in(email: str, sub: str, **claims: Any) -> GraphQLClient:
        transport = httpx.ASGITransport(app=app)
        http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(http)
        client = GraphQLClient(http)
        body = await client.gql(
            LOGIN, {"idToken": fake_google.mint(sub=sub, email=email, **claims)}
        )
        assert "errors" not in body, body
        payload = body["data"]["googleLogin"]
        client.token = payload["accessToken"]
        client.refresh = payload["refreshToken"]
        client.user_id = payload["user"]["id"]
        return client

    clients: list[httpx.AsyncClient] = []
    yield _sign_in
    for http in clients:
        await http.aclose()


@pytest.fixture
async def user(sign_in: Any) -> GraphQLClient:
    client: GraphQLClient = await sign_in("user@example.com", "sub-user")
    return client


@pytest.fixture
async def other_user(sign_in: Any) -> GraphQLClient:
    client: GraphQLClient = await sign_in("other@example.com", "sub-other")
    return client


@pytest.fixture
async def admin(sign_in: Any) -> GraphQLClient:
    client: GraphQLClient = await sign_in(ADMIN_EMAIL, "sub-admin")
    return client
