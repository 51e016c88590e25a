"""Browser-test fixtures: the service served for real, and Debian's Chromium under Playwright.

The service runs as ``python -m graphql_api serve`` in a subprocess on a free 127.0.0.1
port (development by default, SQLite, the fake Google issuer). A production server serves
no reference page: ``serve_reference_page`` has the browser context answer the page's own
URLs from the same files, with the same headers, so that the page, its origin, its
requests and its cookies are those of a real deployment. Chromium is the system package
(``/usr/bin/chromium``, installed by ``scripts/ensure-chromium``); Playwright's own browser
download is never used. Without Chromium or Playwright these tests skip, and fail under
CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from graphql_api.web.client_page import ASSETS, PAGE_HEADERS, STATIC_DIR
from tests.conftest import IN_CI
from tests.fake_google import CLIENT_ID, FakeGoogle
from tests.live_server import COMMAND, LiveServer, environment

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Route

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RESULTS = Path(__file__).resolve().parents[2] / "test-results"
ACCESS_TOKEN_TTL = 10  # the smallest the settings allow: expiry is observable in a test


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tests cannot run: {reason}")
    pytest.skip(f"browser tests skipped: {reason} (run scripts/ensure-chromium)")


@pytest.fixture(scope="module")
def serve(
    tmp_path_factory: pytest.TempPathFactory, fake_google: FakeGoogle, keys_file: Path
) -> Iterator[Callable[..., LiveServer]]:
    """``serve(**env)`` -> a migrated, ready server; GRAPHQL_API_<NAME> from ``env``."""
    servers: list[LiveServer] = []

    def _serve(**overrides: str) -> LiveServer:
        tmp = tmp_path_factory.mktemp("live")
        settings = {
            "ENV": "development",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/e2e.db",
            "GOOGLE_CLIENT_IDS": CLIENT_ID,
            "GOOGLE_CERTS_URL": fake_google.jwks_url,
            "JWT_KEYS_FILE": str(keys_file),
            "ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
            "JWT_LEEWAY": "0",
            "LOGIN_RATE_LIMIT": "1000/minute",
            "REFRESH_RATE_LIMIT": "1000/minute",
            **overrides,
        }
        subprocess.run(  # noqa: S603 - our own CLI
            [*COMMAND, "migrate"], env=environment(settings), check=True, capture_output=True
        )
        server = LiveServer.start(settings=settings, log_dir=tmp, timeout=20)
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop(timeout=10)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


def results_dir() -> Path:
    RESULTS.mkdir(exist_ok=True)
    return RESULTS


def page_errors(page: Any) -> list[str]:
    """Uncaught exceptions and console errors of ``page`` (CSP violations included)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text} ({message.location['url']})")
            if message.type == "error" and not message.location["url"].endswith("/favicon.ico")
            else None
        ),
    )
    return errors


async def serve_reference_page(
    context: BrowserContext, server: LiveServer, *, google_client_id: str | None
) -> None:
    """Answer ``/``, ``/static/<asset>`` and ``/client-config.json`` of ``server`` as
    development's ``web/client_page.py`` does; everything else reaches the server."""
    types = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}

    async def index(route: Route) -> None:
        await route.fulfill(
            status=200,
            path=STATIC_DIR / "index.html",
            content_type="text/html; charset=utf-8",
            headers=PAGE_HEADERS,
        )

    async def asset(route: Route) -> None:
        name = route.request.url.rsplit("/", 1)[1]
        if name not in ASSETS:
            await route.fulfill(status=404)
            return
        await route.fulfill(
            status=200,
            path=STATIC_DIR / name,
            content_type=types[Path(name).suffix],
            headers={"cache-control": "no-cache"},
        )

    async def config(route: Route) -> None:
        await route.fulfill(
            status=200,
            content_type="application/json",
            # As production would, if it served the page: no development sign-in.
            body=json.dumps(
                {"googleClientId": google_client_id, "graphqlPath": "/graphql", "devSignIn": False}
            ),
            headers={"cache-control": "no-store"},
        )

    await context.route(f"{server.url}/", index)
    await context.route(f"{server.url}/static/*", asset)
    await context.route(f"{server.url}/client-config.json", config)
