"""Fixtures of the fault suite: the real service (`graphql-api serve`, production settings)
started in front of dependencies a test can break, and the figures summary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_ADMIN_DSN, migrated_pg_database
from tests.fake_google import CLIENT_ID, FakeGoogle
from tests.faults.clients import Caller
from tests.faults.dependencies import RedisServer, ensure_redis_server
from tests.faults.figures import taken
from tests.faults.proxy import FaultProxy
from tests.live_server import LiveServer

# Small deadlines, so that a fault costs seconds, not the defaults' 3-5 s.
FAST_TIMEOUTS = {
    "DB_CONNECT_TIMEOUT": "1",
    "DB_POOL_TIMEOUT": "1",
    "DB_STATEMENT_TIMEOUT": "1",
    "GOOGLE_CERTS_TIMEOUT": "1",
}

Serve = Callable[..., LiveServer]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    rows = taken()
    if not rows:
        return
    terminalreporter.section("fault figures")
    for fault, name, value in rows:
        terminalreporter.write_line(f"{fault}: {name} = {value}")


def production_settings(
    *, database_url: str, keys_file: Path, google: FakeGoogle, **more: str
) -> dict[str, str]:
    return {
        "ENV": "production",
        "TRUSTED_DOCUMENTS": "off",
        "DATABASE_URL": database_url,
        "JWT_KEYS_FILE": str(keys_file),
        "GOOGLE_CLIENT_IDS": CLIENT_ID,
        "GOOGLE_CERTS_URL": google.jwks_url,
        # Every request names its own client address (tests/faults/clients.py fresh_ip).
        "TRUSTED_PROXIES": "127.0.0.1",
        "LOGIN_RATE_LIMIT": "1000/minute",
        "REFRESH_RATE_LIMIT": "1000/minute",
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "5",
        **FAST_TIMEOUTS,
        **more,
    }


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(settings, workers=N)`` -> a ready `graphql-api serve`, stopped after the test."""
    servers: list[LiveServer] = []

    def _serve(settings: dict[str, str], *, workers: int = 1) -> LiveServer:
        arguments = ("--workers", str(workers)) if workers > 1 else ()
        server = LiveServer.start(settings=settings, log_dir=tmp_path, arguments=arguments)
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    # A generous timeout: a hang shows up as a figure (and a failure), not as a stuck run.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        yield client


def caller_for(http: httpx.AsyncClient, server: LiveServer) -> Caller:
    return Caller(http, server.url)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server (killed after the test); never the shared one."""
    server = RedisServer(ensure_redis_server(), tmp_path).start()
    yield server
    server.kill()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[str, int], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def _proxy(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(host, port).start()
        proxies.append(proxy)
        return proxy

    yield _proxy
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A throwaway PostgreSQL database at the latest migration (on the shared server, which
    the tests never stop: faults go through a proxy in front of it), dropped after."""
    async with migrated_pg_database() as url:
        yield url


def through(url: str, proxy: FaultProxy) -> str:
    """``url`` with the proxy's address instead of the server's."""
    return make_url(url).set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)


def pg_address() -> tuple[str, int]:
    admin = make_url(PG_ADMIN_DSN)
    return admin.host or "127.0.0.1", admin.port or 5432
